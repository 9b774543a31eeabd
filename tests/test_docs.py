"""The README stays a newcomer's page and the docs stay true to the repository."""

import ast
import re

from orchestration.settings import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
SETTINGS = PROJECT_ROOT / "orchestration" / "settings.py"
CONFIGURATION = PROJECT_ROOT / "docs" / "CONFIGURATION.md"
MAX_README_LINES = 150

FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
URL = re.compile(r"https?://[^\s)<>\]\"'`]+")
LOCAL_HOSTS = ("127.0.0.1", "localhost")
VARIABLE = re.compile(r"BLUEPRINT_[A-Z_]+")


def _docs():
    return [README, *sorted((PROJECT_ROOT / "docs").glob("*.md"))]


def _prose(path):
    """The text of a Markdown file without its code: links in code are examples, not links."""
    return INLINE_CODE.sub("", FENCE.sub("", path.read_text()))


def _links(path):
    text = _prose(path)
    return INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)


def test_readme_is_short():
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, (
        f"README.md has {lines} lines, more than {MAX_README_LINES}: "
        "move reference content to docs/"
    )


def test_relative_links_point_to_files_in_the_repository():
    broken = []
    for doc in _docs():
        for target in _links(doc):
            if target.startswith(("#", "http://", "https://", "mailto:")):
                continue
            relative = target.split("#", 1)[0]
            resolved = (doc.parent / relative).resolve()
            if not resolved.is_relative_to(PROJECT_ROOT) or not resolved.exists():
                broken.append(f"{doc.relative_to(PROJECT_ROOT)}: {target}")
    assert not broken, "links to files that are not in the repository:\n" + "\n".join(broken)


def test_no_link_leaves_the_repository():
    outside = [
        f"{doc.relative_to(PROJECT_ROOT)}: {url}"
        for doc in _docs()
        for url in URL.findall(doc.read_text())
        if re.sub(r"^https?://", "", url).split("/", 1)[0].split(":", 1)[0] not in LOCAL_HOSTS
    ]
    assert not outside, (
        "links outside the repository (cite the source as plain text instead):\n"
        + "\n".join(outside)
    )


def _read_variables(path):
    """BLUEPRINT_* names the module reads through ``_env(...)``, ``os.environ`` or ``os.getenv``,
    given as a string literal or as a module-level constant holding one."""
    tree = ast.parse(path.read_text(), filename=str(path))
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }

    def name_of(expr):
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return expr.value
        if isinstance(expr, ast.Name):
            return constants.get(expr.id)
        return None

    def is_environ(expr):
        return isinstance(expr, ast.Attribute) and expr.attr == "environ"

    found = set()
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            if (
                (isinstance(func, ast.Name) and func.id == "_env")
                or (isinstance(func, ast.Attribute) and func.attr in ("get", "setdefault", "pop")
                    and is_environ(func.value))
                or (isinstance(func, ast.Attribute) and func.attr == "getenv")
            ):
                key = name_of(node.args[0])
        elif isinstance(node, ast.Subscript) and is_environ(node.value):
            key = name_of(node.slice)
        if key and VARIABLE.fullmatch(key):
            found.add(key)
    return found


def test_every_setting_read_is_documented():
    read = _read_variables(SETTINGS)
    assert read, f"found no BLUEPRINT_* variable read in {SETTINGS.relative_to(PROJECT_ROOT)}"
    documented = set(VARIABLE.findall(CONFIGURATION.read_text()))
    missing = sorted(read - documented)
    assert not missing, (
        f"read in {SETTINGS.relative_to(PROJECT_ROOT)} but not in "
        f"{CONFIGURATION.relative_to(PROJECT_ROOT)}: {', '.join(missing)}"
    )
