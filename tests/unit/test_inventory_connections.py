"""``trust-agent inventory --connections``: what trust-agent makes of each host's connection settings."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from agent.inventory_cli import inventory_command


def test_the_known_hosts_file_a_native_inventory_names_is_shown_resolved(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yml"
    inventory.write_text(
        "defaults: {user: root, known_hosts: ssh/known_hosts}\n"
        "hosts:\n  h1: {address: 198.51.100.21}\n  h2: {address: 198.51.100.22, known_hosts: /etc/ssh/fleet_hosts}\n"
    )
    shown = CliRunner().invoke(inventory_command, ["-i", str(inventory), "--connections"])
    assert shown.exit_code == 0, shown.output
    settings = json.loads(shown.output)
    assert settings["h1"]["known_hosts"] == str(tmp_path / "ssh" / "known_hosts")
    assert settings["h2"]["known_hosts"] == "/etc/ssh/fleet_hosts"
