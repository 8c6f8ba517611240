#!/bin/sh
# Add-on entrypoint: the binary reads the Supervisor's /data/options.json itself (and asks the
# Supervisor for the MQTT broker when mqtt_url is empty); no bashio needed.
set -e
if [ -f /data/options.json ]; then
  exec /usr/bin/c300x-bridge --options /data/options.json run
fi
exec /usr/bin/c300x-bridge run
