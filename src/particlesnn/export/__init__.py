"""Exports for checking and editing results elsewhere, and their re-import.

One module per format, each with ``write(...)`` and ``read(...)``:

* :mod:`~particlesnn.export.labels`  label image (uint16 TIFF) and per-particle scores (text);
* :mod:`~particlesnn.export.labelme` LabelMe JSON, one file per image;
* :mod:`~particlesnn.export.via`     VGG Image Annotator 2 project JSON for a set of images;
* :mod:`~particlesnn.export.coco`    COCO instance-segmentation JSON for a set of images;
* :mod:`~particlesnn.export.imagej`  ImageJ ROI zip (one polygon ROI per particle);
* :mod:`~particlesnn.export.gwyddion` Gwyddion ``.gwy``: the levelled map with the particles as its mask;
* :mod:`~particlesnn.export.annotations` reads any of them back for one image (and tells which
  copy of an ``analyze`` folder was edited);
* :mod:`~particlesnn.export.overlay` the height map with contours, ids and scale bar (PNG);
* :mod:`~particlesnn.export.report`  one self-contained HTML report.

Polygons follow the convention of :mod:`particlesnn.polygons` (x, y px from the image's
top-left corner; a pixel belongs to a polygon when its centre is inside). Readers return
label images with consecutive labels 1..n, ordered by the particle ids found in the file.
"""
