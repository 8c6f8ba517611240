"""Prints the pip requirements of every integration HA (2024.3, 2026.2) sets up by itself (bootstrap's
built-in sets, which `default_config:` cannot trim) plus mqtt, with their dependencies, so
venv.sh can preinstall them and HA can start with --skip-pip (no registry at run time)."""
import json
import os

import homeassistant.bootstrap as b
import homeassistant.components as c

root = os.path.dirname(c.__file__)
seeds = {"mqtt", "api", "config", "websocket_api", "stream", "camera", "generic"}
for name in dir(b):
    v = getattr(b, name)
    if name.isupper() and isinstance(v, (set, frozenset)) and all(isinstance(x, str) for x in v):
        seeds |= set(v)
todo, seen, reqs = list(seeds), set(), set()
while todo:
    d = todo.pop()
    if d in seen:
        continue
    seen.add(d)
    path = os.path.join(root, d, "manifest.json")
    if not os.path.exists(path):
        continue
    with open(path) as f:
        m = json.load(f)
    reqs.update(m.get("requirements", []))
    todo.extend(m.get("dependencies", []) + m.get("after_dependencies", []))
print("\n".join(sorted(reqs)))
