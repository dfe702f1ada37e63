"""Holds the production Rust to small rooms: no function over 80 lines, no file over 600.

Production code is `shared/src` and `functions/` without the test-only code: files named
`tests.rs`, every `tests/` folder (`src/tests/` and a module's own), the modules `lib.rs` compiles only under `#[cfg(test)]`, and
a file's trailing `#[cfg(test)] mod tests`. Usage: `python scripts/check_size.py [--list]`.
"""

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_FUNCTION_LINES = 80
MAX_FILE_LINES = 600
FN = re.compile(r"^\s*(pub(\([a-z]+\))? )?(const )?(async )?(unsafe )?fn (\w+)")
TEST_ONLY_MODULES = re.compile(r"#\[cfg\(test\)\]\s*\n\s*(pub )?mod (\w+);")


def test_only_files(src: Path) -> set[Path]:
    """The files of the modules `lib.rs` declares under `#[cfg(test)]` (and `tests.rs` files and
    `tests/` folders of the modules)."""
    found = {p for p in src.rglob("tests.rs")} | {p for p in src.rglob("*.rs") if "tests" in p.relative_to(src).parts}
    for module in TEST_ONLY_MODULES.finditer((src / "lib.rs").read_text()):
        found |= {src / f"{module.group(2)}.rs"} | set((src / module.group(2)).rglob("*.rs"))
    return found


def production_files() -> list[Path]:
    src = ROOT / "shared" / "src"
    skip = test_only_files(src)
    files = [p for p in src.rglob("*.rs") if p not in skip]
    return sorted(files + list((ROOT / "functions").rglob("*.rs")))


def production_lines(path: Path) -> list[str]:
    """The file's lines up to its unit tests."""
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines):
        if line.strip() == "#[cfg(test)]" and n + 1 < len(lines) and lines[n + 1].startswith("mod tests {"):
            return lines[:n]
    return lines


def without_literals(line: str) -> str:
    """The line with its comment, string and char literals removed (their braces do not count)."""
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return line.split("//")[0]


def functions(lines: list[str]) -> list[tuple[str, int, int]]:
    """Each function with a body: (name, first line, length in lines)."""
    found = []
    for start, line in enumerate(lines):
        match = FN.match(line)
        if not match:
            continue
        depth, opened = 0, False
        for end in range(start, len(lines)):
            code = without_literals(lines[end])
            if not opened and ";" in code and "{" not in code:
                break  # a declaration without a body (a trait's method)
            depth += code.count("{") - code.count("}")
            opened = opened or "{" in code
            if opened and depth <= 0:
                found.append((match.group(6), start + 1, end - start + 1))
                break
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--list", action="store_true", help="print every function's length, longest first")
    args = parser.parse_args()
    problems, lengths, over = [], [], {}
    for path in production_files():
        lines = production_lines(path)
        name = path.relative_to(ROOT).as_posix()
        if len(lines) > MAX_FILE_LINES:
            over[name] = len(lines)
        for fn, first, length in functions(lines):
            lengths.append((length, f"{name}:{first} {fn}"))
            if length > MAX_FUNCTION_LINES:
                over[f"{name} fn {fn}"] = max(length, over.get(f"{name} fn {fn}", 0))
    for what, length in sorted(over.items()):
        limit = MAX_FUNCTION_LINES if " fn " in what else MAX_FILE_LINES
        problems.append(f"{what}: {length} lines (at most {limit}): split it along its seams")
    if args.list:
        for length, where in sorted(lengths, reverse=True)[:40]:
            print(f"{length:5} {where}")
    for problem in problems:
        print(problem, file=sys.stderr)
    print(
        f"check_size: {len(lengths)} production functions, {len(over)} over the limits",
        file=sys.stderr,
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
