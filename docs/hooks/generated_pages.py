"""mkdocs hook: the reference parts of the Job spec and Recipes pages, generated from the code at build time.

A page asks for one with a line of its own: `<!-- generated: job-spec -->` or `<!-- generated: recipes -->`.

The job-spec reference is read from `JobSpec.model_json_schema()` alone (`$defs`, `$ref`, `anyOf`/`oneOf`,
`discriminator`), never from the Python classes, so it follows the schema however its models and unions
are assembled. Paths are dotted; `[]` marks a list's items (`optimization.regularizers[].alpha`).
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # mkdocs runs from the repository root, but may not have it on the path

PLACEHOLDER = re.compile(r"^<!-- generated: ([a-z-]+) -->[ \t]*$", re.MULTILINE)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    """Replace each placeholder line with its generated markdown."""

    def generate(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise PluginError(f"{page.file.src_path}: unknown generated section {name!r}; known: {sorted(GENERATORS)}")
        return GENERATORS[name]()

    return PLACEHOLDER.sub(generate, markdown)


# ---------------------------------------------------------------------------------------------------------
# Job spec


def job_spec_reference() -> str:
    """Every field of the job spec, section by section: path, type, default, description."""
    from app.schemas.spec import JobSpec

    return SchemaReference(JobSpec.model_json_schema(), minimal_defaults(JobSpec)).render()


def minimal_defaults(model: Any) -> dict[str, Any]:
    """The defaults of a spec that gives only `data.train`: fills the defaults the schema leaves out
    (those made by a default factory, such as a union's default unit)."""
    try:
        return model.model_validate({"data": {"train": "ds_..."}}).model_dump(mode="json")
    except Exception:  # the schema's own defaults still render
        return {}


Options = dict[str, tuple[str, dict[str, Any]]]  # a union's options: {option name: ($defs name, schema)}


@dataclass
class Node:
    """What one property is: its type in words, and the objects or named units it opens."""

    type: str
    # (path, object schema, the $defs names around it); a $defs name already around a node is a cycle
    objects: list[tuple[str, dict[str, Any], tuple[str, ...]]] = field(default_factory=list)
    # (path, discriminating key, its options, the $defs names around it)
    unions: list[tuple[str, str, Options, tuple[str, ...]]] = field(default_factory=list)


class SchemaReference:
    def __init__(self, schema: dict[str, Any], defaults: dict[str, Any]):
        self.schema = schema
        self.defs: dict[str, Any] = schema.get("$defs", {})
        self.root = self.resolve(schema)
        self.defaults = defaults
        self.lines: list[str] = []

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        """Follow `$ref`s; the referring node's own keys (description, default) win."""
        seen = set()
        while "$ref" in node:
            ref = node["$ref"]
            if ref in seen or not ref.startswith("#/$defs/"):
                break
            seen.add(ref)
            target = self.defs[ref.removeprefix("#/$defs/")]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    def ref_name(self, node: dict[str, Any]) -> str | None:
        ref = node.get("$ref", "")
        return ref.removeprefix("#/$defs/") if ref.startswith("#/$defs/") else None

    def render(self) -> str:
        self.section("Top level", "", self.root, (self.ref_name(self.schema) or self.root.get("title", ""),))
        return "\n".join(self.lines) + "\n"

    # A section is one object's table; the objects and unions it opens follow as sections of their own.
    def section(self, heading: str, path: str, obj: dict[str, Any], stack: tuple[str, ...]) -> None:
        self.lines += [f"### {heading}", ""]
        if obj.get("description") and path:
            self.lines += [clean(obj["description"]), ""]
        rows, nodes = self.rows(path, obj, stack)
        self.table(["field", "type", "default", "description"], rows)
        self.follow(nodes)

    def follow(self, nodes: list[Node]) -> None:
        for node in nodes:
            for child_path, child, child_stack in node.objects:
                self.section(f"`{child_path}`", child_path, child, child_stack)
            for union_path, key, options, union_stack in node.unions:
                self.union(union_path, key, options, union_stack)

    def rows(self, path: str, obj: dict[str, Any], stack: tuple[str, ...]) -> tuple[list[list[str]], list[Node]]:
        rows, nodes = [], []
        required = set(obj.get("required", []))
        for name, prop in obj.get("properties", {}).items():
            full = f"{path}.{name}" if path else name
            node = self.describe(full, prop, stack)
            rows.append([f"`{full}`", node.type, self.default(full, prop, name in required, node), self.text(prop)])
            nodes.append(node)
        return rows, nodes

    def union(self, path: str, key: str, options: Options, stack: tuple[str, ...]) -> None:
        """Named units: one table, each option's `key` and its own fields."""
        self.lines += [
            f"### `{path}`",
            "",
            f"One of {', '.join(f'`{name}`' for name in options)}, chosen by `{key}`; "
            "each option's own fields follow its name.",
            "",
        ]
        rows, nodes = [], []
        for name, (def_name, option) in options.items():
            option_stack = (*stack, def_name)
            first = True
            for prop_name, prop in option.get("properties", {}).items():
                full = f"{path}.{prop_name}"
                node = self.describe(full, prop, option_stack)
                required = prop_name in option.get("required", [])
                text = self.text(prop)
                if first and option.get("description"):
                    text = f"{clean(option['description'])} {text}".strip()
                default = self.cell_default(prop, required)
                rows.append([f"`{name}`" if first else "", f"`{full}`", node.type, default, text])
                nodes.append(node)
                first = False
        self.table(["option", "field", "type", "default", "description"], rows)
        self.follow(nodes)

    def describe(self, path: str, prop: dict[str, Any], stack: tuple[str, ...]) -> Node:
        """The property's type in words, and what it opens (an object, a union of named units, a list of them)."""
        name = self.ref_name(prop)
        if name is not None and name in stack:
            return Node(f"a whole `{name}` (this page, from the top)")
        node = self.resolve(prop)
        stack = (*stack, name) if name else stack
        if "oneOf" in node or "anyOf" in node:
            return self.alternatives(path, node, stack)
        if node.get("type") == "array" and "items" in node:
            items = self.describe(f"{path}[]", node["items"], stack)
            return Node(f"list of {items.type}{constraints(node, 'items')}", items.objects, items.unions)
        if node.get("type") == "object" and "properties" in node:
            return Node("object (below)", objects=[(path, node, stack)])
        return Node(scalar(node))

    def alternatives(self, path: str, node: dict[str, Any], stack: tuple[str, ...]) -> Node:
        variants = node.get("oneOf") or node.get("anyOf") or []
        discriminator = node.get("discriminator")
        if discriminator and "mapping" in discriminator:
            key = discriminator.get("propertyName", "name")
            options = {
                name: (ref.removeprefix("#/$defs/"), self.resolve({"$ref": ref}))
                for name, ref in discriminator["mapping"].items()
            }
            names = ", ".join(f"`{n}`" for n in options)
            return Node(f"named unit: {names} (below)", unions=[(path, key, options, stack)])
        nullable = any(v.get("type") == "null" for v in variants)
        rest = [v for v in variants if v.get("type") != "null"]
        units = self.named_units(rest)
        if units is not None:  # a union without a discriminator mapping, whose options still carry their name
            key, options = units
            words = f"named unit: {', '.join(f'`{n}`' for n in options)} (below)" + (" or null" if nullable else "")
            return Node(words, unions=[(path, key, options, stack)])
        parts = [self.describe(path, v, stack) for v in rest]
        words = " or ".join(p.type for p in parts) or "null"
        merged = Node(f"{words} or null" if nullable and rest else words)
        for part in parts:
            merged.objects += part.objects
            merged.unions += part.unions
        return merged

    def named_units(self, variants: list[dict[str, Any]]) -> tuple[str, Options] | None:
        """Two or more `$ref`'d objects that share a property whose value each fixes (`const`): its key and options."""
        refs = [self.ref_name(v) for v in variants]
        if len(variants) < 2 or None in refs:
            return None
        options = [self.resolve(v) for v in variants]
        shared = set.intersection(*(set(o.get("properties", {})) for o in options))
        for key in sorted(shared, key=lambda k: k != "name"):
            consts = [o["properties"][key].get("const") for o in options]
            if all(isinstance(c, str) for c in consts):
                return key, {c: (r, o) for c, r, o in zip(consts, refs, options, strict=True)}
        return None

    def default(self, path: str, prop: dict[str, Any], required: bool, node: Node) -> str:
        if required:
            return "required"
        if "default" in prop:
            return code(prop["default"])
        value = lookup(self.defaults, path)
        if value is _MISSING:
            return ""
        if node.objects and isinstance(value, dict):
            return "its fields' defaults"
        return code(value)

    def cell_default(self, prop: dict[str, Any], required: bool) -> str:
        if required:
            return "required"
        return code(prop["default"]) if "default" in prop else ""

    def text(self, prop: dict[str, Any]) -> str:
        description = prop.get("description")
        if description is None:
            description = self.resolve(prop).get("description", "")
        return clean(description)

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        self.lines += ["| " + " | ".join(escape_pipes(cell) for cell in row) + " |" for row in rows]
        self.lines.append("")


_MISSING = object()


def lookup(values: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(values, dict) or part not in values:
            return _MISSING
        values = values[part]
    return values


def scalar(node: dict[str, Any]) -> str:
    if "const" in node:
        return code(node["const"])
    if "enum" in node:
        return ", ".join(code(value) for value in node["enum"])
    kind = node.get("type", "any")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    return f"{kind}{constraints(node, kind)}"


def constraints(node: dict[str, Any], kind: str) -> str:
    """Bounds in words: `integer, 1 ≤ x ≤ 4096`, `string, length ≥ 1`, `list of ..., at most 8`."""
    low = ("≥", node["minimum"]) if "minimum" in node else (">", node.get("exclusiveMinimum"))
    high = ("≤", node["maximum"]) if "maximum" in node else ("<", node.get("exclusiveMaximum"))
    parts = []
    if low[1] is not None and high[1] is not None:
        parts.append(f"{low[1]} {'≤' if low[0] == '≥' else '<'} x {high[0]} {high[1]}")
    elif low[1] is not None:
        parts.append(f"x {low[0]} {low[1]}")
    elif high[1] is not None:
        parts.append(f"x {high[0]} {high[1]}")
    for key, words in (("minLength", "length ≥"), ("maxLength", "length ≤"), ("minItems", "at least"),
                       ("maxItems", "at most")):
        if key in node:
            parts.append(f"{words} {node[key]}")
    if "pattern" in node:
        parts.append(f"matching `{node['pattern']}`")
    return ", " + ", ".join(parts) if parts else ""


def code(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return f"`{text}`" if "`" not in text else text


def escape_pipes(cell: str) -> str:
    """A table cell's `|` outside code spans (the table extension keeps those inside them)."""
    parts = cell.split("`")
    return "`".join(part if index % 2 else part.replace("|", "\\|") for index, part in enumerate(parts))


def clean(text: str) -> str:
    """One table cell: one line, no raw HTML."""
    return " ".join(text.split()).replace("<", "&lt;")


# ---------------------------------------------------------------------------------------------------------
# Recipes


def recipes_reference() -> str:
    """Each recipe: the comment above it in app/schemas/recipes.py, and its overrides as JSON."""
    from app.schemas import recipes

    notes = recipe_comments(recipes)
    lines: list[str] = []
    for name, overrides in recipes.RECIPES.items():
        lines += [f"### `{name}`", ""]
        if notes.get(name):
            lines += [clean(notes[name]), ""]
        lines += ["```json", json.dumps(overrides, indent=2), "```", ""]
    return "\n".join(lines)


def recipe_comments(module: Any) -> dict[str, str]:
    """The comment lines right above each key of the `RECIPES` literal; {} when it is not one."""
    try:
        source = inspect.getsource(module)
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return {}
    lines = source.splitlines()
    for statement in tree.body:
        targets = statement.targets if isinstance(statement, ast.Assign) else [getattr(statement, "target", None)]
        value = getattr(statement, "value", None)
        if any(isinstance(t, ast.Name) and t.id == "RECIPES" for t in targets) and isinstance(value, ast.Dict):
            return {
                key.value: comment_above(lines, key.lineno - 1)
                for key in value.keys
                if isinstance(key, ast.Constant) and isinstance(key.value, str)
            }
    return {}


def comment_above(lines: list[str], index: int) -> str:
    comment: list[str] = []
    while index > 0 and lines[index - 1].strip().startswith("#"):
        index -= 1
        comment.insert(0, lines[index].strip().lstrip("#").strip())
    return " ".join(comment)


GENERATORS: dict[str, Callable[[], str]] = {"job-spec": job_spec_reference, "recipes": recipes_reference}
