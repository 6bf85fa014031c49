"""Set keys of a model folder's config.json: ``python scripts/set_config.py CONFIG KEY=VALUE...``
(used by the training scripts to name the shipped models and link the height-map model).
VALUE is read as JSON when it is JSON (``true``, ``2``), else kept as text (``height``)."""
import json
import sys
from pathlib import Path

path = Path(sys.argv[1])
config = json.loads(path.read_text())
for item in sys.argv[2:]:
    key, _, value = item.partition("=")
    try:
        config[key] = json.loads(value)
    except ValueError:
        config[key] = value
path.write_text(json.dumps(config, indent=1))
