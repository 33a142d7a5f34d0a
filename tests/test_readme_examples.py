"""Every ``curl`` example in the README, run as written against a real
``chalice local`` (only the port differs), answers 200 with JSON."""
import json
import os
import re
import subprocess

import pytest

from tests.conftest import PROJECT_DIR


def readme_curl_commands():
    """The curl commands of the README's sh blocks, continuation lines and
    quoted multi-line bodies joined; comment lines dropped."""
    text = open(os.path.join(PROJECT_DIR, "README.md")).read()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        command = ""
        for line in block.splitlines():
            if not command:
                if not line.startswith("curl "):
                    continue
                line = re.sub(r"\s+#.*$", "", line) if line.count("'") % 2 == 0 else line
            command += line + "\n"
            if command.count("'") % 2 == 0 and not line.endswith("\\"):
                commands.append(command.strip())
                command = ""
    return commands


COMMANDS = readme_curl_commands()


def test_the_readme_has_examples_for_every_format():
    joined = "\n".join(COMMANDS)
    for fragment in ('"instances": [[', '"instances": [{', "dataframe_split", "dataframe_records",
                     "text/csv", "probabilities", "/health"):
        assert fragment in joined


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_example_answers(local_url, command):
    port = local_url.rsplit(":", 1)[1]
    command = command.replace("localhost:8000", "127.0.0.1:" + port)
    command = command.replace("curl -s", "curl -s -w '\\n%{http_code}'", 1)
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "200", (command, body)
    json.loads(body)
