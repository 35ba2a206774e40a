"""Refresh the browser assets vendored under src/creditgate/adapters/web/static/vendor/.

GraphiQL is served by creditgate itself, so it works with no internet access and runs no third-party
script. This fetches the pinned npm packages with `npm pack` into a temporary folder and copies their
prebuilt bundles and LICENSE files; bump a version below, run it, check the page
(`uv run pytest tests/web -q`), commit the result.

    uv run python scripts/vendor_web.py
"""

from __future__ import annotations

import hashlib
import pathlib
import shutil
import subprocess
import tarfile
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENDOR = ROOT / "src" / "creditgate" / "adapters" / "web" / "static" / "vendor"

# package, version, files to copy (paths inside the package tarball)
PACKAGES: list[tuple[str, str, list[str]]] = [
    # 4.x is the last major with a standalone UMD bundle (graphql, codemirror... included); 5.x needs a build.
    ("graphiql", "4.1.2", ["graphiql.min.js", "graphiql.min.css", "LICENSE"]),
    # React 19 ships no UMD build any more; GraphiQL 4 takes React 18.
    ("react", "18.3.1", ["umd/react.production.min.js", "LICENSE"]),
    ("react-dom", "18.3.1", ["umd/react-dom.production.min.js", "LICENSE"]),
]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        for name, version, files in PACKAGES:
            out = subprocess.run(["npm", "pack", f"{name}@{version}", "--silent"], cwd=work, check=True,
                                 capture_output=True, text=True).stdout.strip().splitlines()[-1]
            target = VENDOR / f"{name}-{version}"
            for old in VENDOR.glob(f"{name}-*"):
                if old.name.removeprefix(f"{name}-")[:1].isdigit():
                    shutil.rmtree(old)
            target.mkdir(parents=True)
            with tarfile.open(work / out) as tar:
                for path in files:
                    member = tar.extractfile(f"package/{path}")
                    assert member is not None, f"{name}@{version} has no {path}"
                    data = member.read()
                    (target / pathlib.Path(path).name).write_bytes(data)
                    print(f"{name}@{version} {path} sha256:{hashlib.sha256(data).hexdigest()[:16]}")


if __name__ == "__main__":
    main()
