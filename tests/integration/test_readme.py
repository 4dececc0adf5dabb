"""Runs the README's curl walk-through verbatim (only the address is changed to the test's free
port) against the real holdfast, and checks what each command printed."""

import json
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import Holdfast  # noqa: E402


def readme_section(title):
    with open(os.path.join(os.environ["HOLDFAST_SOURCE_DIR"], "README.md")) as f:
        text = f.read()
    start = text.index("## " + title)
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def shell_blocks(section):
    return re.findall(r"```sh\n(.*?)```", section, re.S)


class ReadmeTest(unittest.TestCase):
    def test_walkthrough_verbatim(self):
        blocks = shell_blocks(readme_section("A walk-through with curl"))
        self.assertEqual(len(blocks), 2)
        with Holdfast() as hf:
            script = "\n".join(blocks).replace("http://127.0.0.1:8080", hf.base)
            out = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True,
                                 timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            docs = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
            # 7 creates, 5 reads, 2 refusals, in README order.
            self.assertEqual(len(docs), 14, out.stdout)
            self.assertEqual(docs[0]["name"], "edge")
            self.assertEqual(docs[1]["affinity"]["mode"], "cookie")
            self.assertEqual([d["role"] for d in docs[2:4]], ["active", "standby"])
            self.assertEqual([d["id"] for d in docs[4:7]],
                             ["127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8091"])
            self.assertEqual(docs[7]["name"], "cart")
            self.assertEqual(len(docs[8]["items"]), 2)
            self.assertEqual(len(docs[9]["items"]), 2)
            self.assertEqual(docs[10]["health"], "unknown")
            self.assertEqual(len(docs[11]["items"]), 7)
            # The refusals print exactly what the README shows in its comments.
            shown = [json.loads(c) for c in re.findall(r"^# (\{.*\})$", blocks[1], re.M)]
            self.assertEqual(docs[12:], shown)


if __name__ == "__main__":
    unittest.main(verbosity=2)
