"""Every ``curl`` example in the README and the docs pages, run as written
against a real ``chalice local`` (only the port differs), answers 200 with
JSON; and every relative link of the README names a file that exists (the
docs pages' own links are checked by ``mkdocs build --strict``)."""
import glob
import json
import os
import re
import subprocess

import pytest

from tests.conftest import PROJECT_DIR


DOCUMENTS = ["README.md"] + sorted(
    os.path.relpath(p, PROJECT_DIR) for p in glob.glob(os.path.join(PROJECT_DIR, "docs", "*.md")))


def curl_commands(document):
    """The curl commands of a document's sh blocks, continuation lines and
    quoted multi-line bodies joined; comment lines dropped."""
    text = open(os.path.join(PROJECT_DIR, document)).read()
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


EXAMPLES = [(document, command) for document in DOCUMENTS for command in curl_commands(document)]


def test_the_readme_has_examples_for_every_format():
    joined = "\n".join(curl_commands("README.md"))
    for fragment in ('"instances": [[', '"instances": [{', "dataframe_split", "dataframe_records",
                     "text/csv", "probabilities", "/health"):
        assert fragment in joined


def test_the_docs_pages_have_examples_of_their_own():
    """The contract and the protocols pages carry examples, run here too."""
    by_document = {}
    for document, command in EXAMPLES:
        by_document.setdefault(document, []).append(command)
    assert by_document.get("docs/contract.md") and by_document.get("docs/protocols.md")
    joined = "\n".join(by_document["docs/protocols.md"])
    for route in ("/invocations", "/v1/models/", "/v2/models/"):
        assert route in joined


def test_the_readmes_relative_links_exist():
    text = open(os.path.join(PROJECT_DIR, "README.md")).read()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert "docs/contract.md" in local
    missing = [t for t in local if not os.path.exists(os.path.join(PROJECT_DIR, t))]
    assert not missing


@pytest.mark.parametrize("document,command", EXAMPLES,
                         ids=["%s-%d" % (d, i) for i, (d, _) in enumerate(EXAMPLES)])
def test_readme_example_answers(local_url, document, command):
    port = local_url.rsplit(":", 1)[1]
    command = command.replace("localhost:8000", "127.0.0.1:" + port)
    command = command.replace("curl -s", "curl -s -w '\\n%{http_code}'", 1)
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "200", (document, command, body)
    json.loads(body)
