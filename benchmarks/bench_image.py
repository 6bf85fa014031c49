"""Benchmark: image.read on 2048 x 2048 pictures (palette PNG, palette JPEG, grey PNG)."""
import time, numpy as np
from PIL import Image, ImageDraw
from matplotlib import colormaps
from particlesnn.io import image
rng=np.random.default_rng(0)
n=2048
yy,xx=np.mgrid[:n,:n]
z=0.2*xx/n+0.01*rng.standard_normal((n,n))
for _ in range(300):
    cy,cx=rng.uniform(0,n,2); z+=np.exp(-((yy-cy)**2+(xx-cx)**2)/(2*8.0**2))
u=np.clip((z-z.min())/(np.percentile(z,99.8)-z.min()),0,1)
for name,ext in [('afmhot','png'),('viridis','jpg'),('gray','png')]:
    rgb=(colormaps[name](u)[...,:3]*255).round().astype(np.uint8)
    im=Image.fromarray(rgb); d=ImageDraw.Draw(im); d.rectangle([100,1950,500,1960],fill=(255,255,255))
    p=f'/tmp/h2/big_{name}.{ext}'; im.save(p)
    for _ in range(2):
        t=time.perf_counter(); c=time.process_time(); hm=image.read(p, scale_bar=1000)
        print(f'{name}.{ext} 2048^2: wall {time.perf_counter()-t:.2f} s cpu {time.process_time()-c:.2f} s; palette {hm.metadata["palette"]}, bar {hm.metadata["scale_bar"]["length_px"]} px, masked {hm.metadata["masked_fraction"]:.4f}')
