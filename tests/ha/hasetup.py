"""Home Assistant for the real-HA check: writes a ready configuration (onboarding done, an owner
with a long-lived token signed as HA signs its JWTs, the MQTT config entry) in the storage format
of the HA version under test, and starts it — from the 2024.3.3 venv (Python 3.11) or inside the
2026.2.3 trixie chroot (tests/ha/chroot.sh exec), whose /tmp is where its config must live.
"""

import json
import os
import secrets
import subprocess
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

import jwt

HERE = os.path.dirname(os.path.abspath(__file__))


def write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f)


class HomeAssistant:
    """One HA version: where it runs and how its storage looks."""

    def __init__(self, version, home):
        self.version = version  # "2024.3.3" or "2026.2.3"
        self.home = home  # the venv (2024.3) or the chroot root (2026.2)
        self.chroot = not version.startswith("2024.")
        self.modern = not version.startswith("2024.")

    def make_config_dir(self):
        """A fresh config directory: (path on this host, path HA sees)."""
        if self.chroot:
            host = tempfile.mkdtemp(prefix="c300x-ha-", dir=os.path.join(self.home, "tmp"))
            return host, "/tmp/" + os.path.basename(host)
        host = tempfile.mkdtemp(prefix="c300x-ha-")
        return host, host

    def command(self, seen_cfg, seen_log):
        hass = ["hass", "-c", seen_cfg, "--skip-pip", "--log-file", seen_log]
        if self.chroot:
            env = dict(os.environ, HA_ROOT=self.home)
            return [os.path.join(HERE, "chroot.sh"), "exec", "/ha/bin/hass"] + hass[1:], env
        return [os.path.join(self.home, "bin", "hass")] + hass[1:], dict(os.environ)

    def start(self, seen_cfg, seen_log):
        cmd, env = self.command(seen_cfg, seen_log)
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)

    def write_config(self, cfg, ha_port, broker_port):
        """configuration.yaml and .storage; returns the long-lived access token."""
        with open(os.path.join(cfg, "configuration.yaml"), "w") as f:
            f.write(
                "homeassistant:\n  name: c300x-test\n  time_zone: UTC\n  unit_system: metric\n"
                "  latitude: 0\n  longitude: 0\n  elevation: 0\n"
                f"http:\n  server_host: 127.0.0.1\n  server_port: {ha_port}\n"
                "api:\nconfig:\nwebsocket_api:\nstream:\n"
                "logger:\n  default: warning\n  logs:\n    homeassistant.components.mqtt: info\n"
                "    homeassistant.components.generic: info\n"
            )
        storage = os.path.join(cfg, ".storage")
        os.makedirs(storage)
        write_json(os.path.join(storage, "onboarding"), {
            "version": 4, "minor_version": 1, "key": "onboarding",
            "data": {"done": ["user", "core_config", "analytics", "integration"]},
        })
        user_id, token_id, jwt_key = uuid.uuid4().hex, uuid.uuid4().hex, secrets.token_hex(64)
        expiration = timedelta(days=3650)
        now = datetime.now(timezone.utc)
        write_json(os.path.join(storage, "auth"), {
            "version": 1, "minor_version": 1, "key": "auth",
            "data": {
                "users": [{
                    "id": user_id, "group_ids": ["system-admin"], "is_owner": True,
                    "is_active": True, "name": "Owner", "system_generated": False,
                    "local_only": False,
                }],
                "groups": [
                    {"id": "system-admin", "name": "Administrators"},
                    {"id": "system-users", "name": "Users"},
                    {"id": "system-read-only", "name": "Read Only"},
                ],
                "credentials": [],
                "refresh_tokens": [{
                    "id": token_id, "user_id": user_id, "client_id": None,
                    "client_name": "c300x-bridge test", "client_icon": None,
                    "token_type": "long_lived_access_token", "created_at": now.isoformat(),
                    "access_token_expiration": expiration.total_seconds(),
                    "token": secrets.token_hex(64), "jwt_key": jwt_key,
                    "last_used_at": None, "last_used_ip": None, "expire_at": None,
                    "credential_id": None, "version": self.version,
                }],
            },
        })
        mqtt = {
            "entry_id": uuid.uuid4().hex, "domain": "mqtt", "title": "127.0.0.1",
            "pref_disable_new_entities": False, "pref_disable_polling": False,
            "source": "user", "unique_id": None, "disabled_by": None,
        }
        if self.modern:
            # Store 1.5 and the MQTT entry 2.1 (home-assistant.md §8).
            stamp = now.isoformat()
            mqtt.update({
                "version": 2, "minor_version": 1,
                "data": {"broker": "127.0.0.1", "port": broker_port},
                "options": {"discovery": True, "discovery_prefix": "homeassistant"},
                "created_at": stamp, "modified_at": stamp, "discovery_keys": {},
                "subentries": [],
            })
            store_minor = 5
        else:
            mqtt.update({
                "version": 1, "minor_version": 1,
                "data": {"broker": "127.0.0.1", "port": broker_port, "discovery": True,
                         "discovery_prefix": "homeassistant"},
                "options": {},
            })
            store_minor = 1
        write_json(os.path.join(storage, "core.config_entries"), {
            "version": 1, "minor_version": store_minor, "key": "core.config_entries",
            "data": {"entries": [mqtt]},
        })
        # As HA's auth.async_create_access_token: HS256 over {iss, iat, exp} with the jwt_key.
        iat = int(time.time())
        return jwt.encode({"iss": token_id, "iat": iat,
                           "exp": iat + int(expiration.total_seconds())},
                          jwt_key, algorithm="HS256")

    def mqtt_ready_marker(self):
        """The log line that says HA's MQTT client is connected (debug-level in newer HAs)."""
        if self.modern:
            return "MQTT client initialized, birth message sent"
        return "Connected to MQTT server"
