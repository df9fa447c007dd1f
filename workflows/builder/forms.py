"""Builder forms. The step form is built from the node type's `config_schema`
(workflows/definition.py): strings become text inputs (templates a textarea), enums a select,
numbers number inputs, objects and lists a JSON textarea. Fields are named after the document
path they fill (`config.prompt` → `cfg_prompt`), so a validator's error lands beside its field.
"""

from __future__ import annotations

import json
from typing import Any, cast

from django import forms

from workflows.definition import DEFAULT_BACKOFF_SECONDS, DEFAULT_TIMEOUT_SECONDS, NODE_TYPES

TEMPLATE_MAX = 20000
INPUT_TYPES = ["string", "number", "integer", "boolean", "object", "array"]

# What a new step of each type starts with: enough that a click on "Add" can succeed.
DEFAULT_CONFIG: dict[str, dict[str, Any]] = {
    "agent": {"prompt": "{{ input }}"},
    "llm": {"model": "default", "prompt": "{{ input }}"},
    "tool": {"tool": "calculator", "arguments": {"expression": "1 + 1"}},
    "condition": {"expression": "True"},
    "router": {
        "mode": "expression",
        "routes": [{"name": "first"}, {"name": "second"}],
        "expression": "'first'",
    },
    "parallel": {},
    "join": {"mode": "all"},
    "map": {
        "items": "[]",
        "concurrency": 4,
        "node": {"type": "transform", "config": {"value": "{{ item }}"}},
    },
    "transform": {"value": "{{ input }}"},
    "code": {
        "inputs": {"value": "{{ input }}"},
        "code": 'def main(inputs):\n    return {"value": inputs["value"]}\n',
    },
    "approval": {"message": "Please review.", "approvers": "members"},
    "sub_workflow": {"inputs": {}},
    "webhook_wait": {"timeout_seconds": 86400},
}

# Config fields a form does not show: `agent` is the label saving writes from `agent_id`.
HIDDEN_CONFIG: dict[str, frozenset[str]] = {"agent": frozenset({"agent"})}
# Fields a form asks for although the schema lets a draft lack them.
FORM_REQUIRED: dict[str, frozenset[str]] = {"agent": frozenset({"agent_id"})}

HELP: dict[str, str] = {
    "agent_id": "An agent of this workspace. The step keeps it when the agent is renamed.",
    "prompt": "A template: text with {{ expressions }}, e.g. {{ input.ticket }} or "
    "{{ steps.classify.text }}.",
    "system": "Optional template for the system message.",
    "message": "A template shown to the approver.",
    "model": "A model alias of this workspace (e.g. default) or provider:model.",
    "expression": "An expression, e.g. steps.classify.data.urgent == true.",
    "items": "An expression giving a list, e.g. steps.extract.data.rows.",
    "output_schema": 'Optional JSON schema of the answer, e.g. {"type": "object", '
    '"properties": {"urgent": {"type": "boolean"}}}.',
    "arguments": "A JSON object; string values are templates.",
    "inputs": "A JSON object of the child workflow's inputs; string values are templates.",
    "routes": 'A JSON list, e.g. [{"name": "billing", "description": "Invoices"}, '
    '{"name": "other"}].',
    "node": 'The per-item step: {"type": "llm", "config": {"model": "default", '
    '"prompt": "{{ item }}"}} (agent, llm, tool, transform, code or sub_workflow). An agent body '
    'names its agent: {"agent": "Support triage", …}; saving adds its id.',
    "value": "A template (text with {{ expressions }}) or a JSON object of templates.",
    "concurrency": "How many items run at once.",
    "n": "With mode n: how many branches to wait for.",
    "version": "Empty: the child's active version.",
    "timeout_seconds": "How long to wait for the post before the step fails.",
    "approvers": "Who may decide: any member, or admins only.",
    "code": "Python 3. Define main(inputs): it gets the rendered inputs below as a dict and "
    "returns JSON (a dict, list, string, number, true/false or None), the step's output. "
    "import json, re, math, datetime, decimal, base64, collections, itertools, statistics or "
    "any other standard module. It runs sandboxed: no network, no files, no platform data; "
    "CPU time, wall time, memory and output are limited; print() output is discarded.",
}
# Help where a field name means something else for one node type.
TYPE_HELP: dict[tuple[str, str], str] = {
    ("code", "inputs"): 'A JSON object of templates, e.g. {"rows": "{{ steps.extract.data }}"}: '
    "main(inputs) receives it rendered.",
}

_JSON_ATTRS = {"rows": 5, "spellcheck": "false", "class": "mono"}
_TEMPLATE_ATTRS = {"rows": 4, "spellcheck": "false", "class": "mono"}
_CODE_ATTRS = {
    "rows": 14,
    "spellcheck": "false",
    "class": "mono",
    "wrap": "off",
    "autocapitalize": "off",
    "autocomplete": "off",
}


def _json_text(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def parse_json(text: str, *, expect: type | tuple[type, ...] | None = None) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise forms.ValidationError(
            f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        ) from exc
    if expect is not None and not isinstance(value, expect):
        kind = "an object ({…})" if expect is dict else "a list ([…])"
        raise forms.ValidationError(f"Must be {kind}.")
    return value


class JSONTextField(forms.CharField):
    """A JSON value typed as text; `kind` is "object", "array" or "any" (a template string,
    or JSON when the text starts with { or [)."""

    def __init__(self, *, kind: str = "object", **kwargs: Any) -> None:
        self.kind = kind
        kwargs.setdefault("widget", forms.Textarea(attrs=_JSON_ATTRS))
        kwargs.setdefault("strip", True)
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict | list):
            return _json_text(value)
        return value

    def to_python(self, value: Any) -> Any:
        text = str(super().to_python(value) or "")
        if not text:
            return None
        if self.kind == "any":
            # `{{ … }}` opens a template, never a JSON object.
            is_json = text[:1] in "{[" and not text.startswith("{{")
            return parse_json(text) if is_json else text
        return parse_json(text, expect=dict if self.kind == "object" else list)


def _schema_field(
    name: str, spec: dict[str, Any], required: bool, choices: list[tuple[Any, str]] | None
) -> forms.Field:
    label = "Agent" if name == "agent_id" else name.replace("_", " ").capitalize()
    help_text = HELP.get(name, "")
    kind = spec.get("type")
    if choices is not None and kind == "integer":
        return forms.TypedChoiceField(
            label=label,
            required=required,
            help_text=help_text,
            coerce=int,
            empty_value=None,
            choices=[("", "—"), *choices],
        )
    if choices is not None:
        return forms.ChoiceField(
            label=label, required=required, help_text=help_text, choices=[("", "—"), *choices]
        )
    if "enum" in spec:
        options = [(str(v), str(v)) for v in spec["enum"]]
        if not required:
            options = [("", "—"), *options]
        return forms.ChoiceField(
            label=label, required=required, help_text=help_text, choices=options
        )
    if kind == "string" and spec.get("contentMediaType") == "text/x-python":
        return forms.CharField(
            label="Python code",
            required=required,
            help_text=help_text,
            strip=False,
            max_length=spec.get("maxLength"),
            widget=forms.Textarea(attrs=_CODE_ATTRS),
        )
    if kind == "string":
        if spec.get("maxLength", 0) >= TEMPLATE_MAX:
            return forms.CharField(
                label=label,
                required=required,
                help_text=help_text,
                strip=False,
                max_length=spec["maxLength"],
                widget=forms.Textarea(attrs=_TEMPLATE_ATTRS),
            )
        return forms.CharField(
            label=label,
            required=required,
            help_text=help_text,
            max_length=spec.get("maxLength"),
            widget=forms.TextInput(attrs={"spellcheck": "false"}),
        )
    if kind in ("integer", ["integer", "null"]):
        return forms.IntegerField(
            label=label,
            required=required,
            help_text=help_text,
            min_value=spec.get("minimum"),
            max_value=spec.get("maximum"),
        )
    if kind == "number":
        return forms.FloatField(
            label=label,
            required=required,
            help_text=help_text,
            min_value=spec.get("minimum"),
            max_value=spec.get("maximum"),
        )
    if kind == "array":
        return JSONTextField(kind="array", label=label, required=required, help_text=help_text)
    if kind == "object":
        return JSONTextField(kind="object", label=label, required=required, help_text=help_text)
    return JSONTextField(kind="any", label=label, required=required, help_text=help_text)


class StepForm(forms.Form):
    """One step: id, name, the type's config fields, retry and timeout."""

    base = forms.IntegerField(widget=forms.HiddenInput)
    id = forms.RegexField(
        regex=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$",
        max_length=64,
        label="Step id",
        help_text="Letters, digits, _ and -; starts with a letter. Other steps read its output "
        "as steps.<id>.",
        error_messages={"invalid": "Use letters, digits, _ and -, starting with a letter."},
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
    )
    name = forms.CharField(max_length=120, required=False, label="Display name")
    retry_max_attempts = forms.IntegerField(
        min_value=1, max_value=10, required=False, label="Attempts", help_text="1–10; default 1."
    )
    retry_backoff_seconds = forms.FloatField(
        min_value=0,
        max_value=3600,
        required=False,
        label="Backoff (s)",
        help_text=f"Doubled per attempt; default {DEFAULT_BACKOFF_SECONDS:g}.",
    )
    timeout_seconds = forms.IntegerField(
        min_value=1,
        max_value=86400,
        required=False,
        label="Timeout (s)",
        help_text=f"Default {DEFAULT_TIMEOUT_SECONDS}.",
    )

    def __init__(
        self,
        *args: Any,
        node_type: str,
        choices: dict[str, list[tuple[Any, str]]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.node_type = NODE_TYPES[node_type]
        schema = self.node_type.config_schema
        required = set(schema.get("required", [])) | FORM_REQUIRED.get(node_type, frozenset())
        hidden = HIDDEN_CONFIG.get(node_type, frozenset())
        choices = choices or {}
        self.config_names: list[str] = []
        for name, spec in schema.get("properties", {}).items():
            if name in hidden:
                continue
            field = _schema_field(name, spec, name in required, choices.get(name))
            field.help_text = TYPE_HELP.get((node_type, name), field.help_text)
            self.fields[f"cfg_{name}"] = field
            self.config_names.append(name)
        # What the schema requires may stay empty in a draft: saving then names it beside its
        # field. What only the form asks for (FORM_REQUIRED) is still required here.
        self.draft_optional = [
            f"cfg_{name}"
            for name in schema.get("required", [])
            if name in self.config_names and name not in FORM_REQUIRED.get(node_type, ())
        ]

    def full_clean(self) -> None:
        """Clean with the `draft_optional` fields not required; they still show as required."""
        for name in self.draft_optional:
            self.fields[name].required = False
        try:
            super().full_clean()
        finally:
            for name in self.draft_optional:
                self.fields[name].required = True

    @property
    def config_fields(self) -> list[forms.BoundField]:
        return [self[f"cfg_{name}"] for name in self.config_names]

    @property
    def timing_fields(self) -> list[forms.BoundField]:
        return [self["retry_max_attempts"], self["retry_backoff_seconds"], self["timeout_seconds"]]

    @classmethod
    def initial_for(cls, step: dict[str, Any], base: int) -> dict[str, Any]:
        retry = step.get("retry") or {}
        initial: dict[str, Any] = {
            "base": base,
            "id": step.get("id", ""),
            "name": step.get("name", ""),
            "retry_max_attempts": retry.get("max_attempts"),
            "retry_backoff_seconds": retry.get("backoff_seconds"),
            "timeout_seconds": step.get("timeout_seconds"),
        }
        for name, value in (step.get("config") or {}).items():
            initial[f"cfg_{name}"] = value
        return initial

    def to_step(self) -> dict[str, Any]:
        data = self.cleaned_data
        step: dict[str, Any] = {"id": data["id"], "type": self.node_type.name}
        if data.get("name"):
            step["name"] = data["name"]
        config: dict[str, Any] = {}
        for name in self.config_names:
            value = data.get(f"cfg_{name}")
            if value is None or value == "":
                continue
            config[name] = value
        step["config"] = config
        retry: dict[str, Any] = {}
        if data.get("retry_max_attempts") is not None:
            retry["max_attempts"] = data["retry_max_attempts"]
        if data.get("retry_backoff_seconds") is not None:
            backoff = data["retry_backoff_seconds"]
            retry["backoff_seconds"] = int(backoff) if float(backoff).is_integer() else backoff
        if retry:
            step["retry"] = retry
        if data.get("timeout_seconds") is not None:
            step["timeout_seconds"] = data["timeout_seconds"]
        return step

    def field_for_path(self, path: str) -> str | None:
        """The form field a document path inside this step belongs to (`config.prompt`)."""
        head = path.split("[", 1)[0]
        parts = head.split(".")
        if parts[0] == "config" and len(parts) > 1 and parts[1] in self.config_names:
            return f"cfg_{parts[1]}"
        if parts[:2] == ["config", "agent"] and "agent_id" in self.config_names:
            return "cfg_agent_id"  # the name is the picker's label
        if parts[0] == "retry" and len(parts) > 1 and f"retry_{parts[1]}" in self.fields:
            return f"retry_{parts[1]}"
        if parts[0] in ("id", "name", "timeout_seconds"):
            return parts[0]
        return None


class AddStepForm(StepForm):
    after = forms.ChoiceField(
        required=False,
        label="After step",
        help_text="Also adds the edge from that step (and branch) to the new one.",
    )
    insert = forms.BooleanField(
        required=False,
        initial=True,
        label="Insert between it and its next steps",
        help_text="Its edges on that branch then leave from the new step.",
    )

    def __init__(
        self, *args: Any, after_choices: list[tuple[str, str]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        field = cast(forms.ChoiceField, self.fields["after"])
        field.choices = [("", "— not connected —"), *(after_choices or [])]


class TypePickForm(forms.Form):
    type = forms.ChoiceField(
        label="Step type",
        choices=[(name, f"{node.label} — {node.description}") for name, node in NODE_TYPES.items()],
    )


class ConnectForm(forms.Form):
    base = forms.IntegerField(widget=forms.HiddenInput)
    source = forms.ChoiceField(
        label="From", help_text="A branch for conditions, routers, approvals."
    )
    target = forms.ChoiceField(label="To")

    def __init__(
        self,
        *args: Any,
        source_choices: list[tuple[str, str]],
        target_choices: list[str],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["source"]).choices = source_choices
        cast(forms.ChoiceField, self.fields["target"]).choices = [(t, t) for t in target_choices]


class EdgeForm(forms.Form):
    base = forms.IntegerField(widget=forms.HiddenInput)
    source = forms.CharField(max_length=64)
    target = forms.CharField(max_length=64)
    branch = forms.CharField(max_length=64, required=False)


class DeleteStepForm(forms.Form):
    base = forms.IntegerField(widget=forms.HiddenInput)
    reconnect = forms.BooleanField(
        required=False,
        initial=True,
        label="Reconnect its neighbours",
        help_text="Link the steps before it to the steps after it.",
    )


class InputRowForm(forms.Form):
    name = forms.RegexField(
        regex=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        required=False,
        max_length=64,
        error_messages={"invalid": "Letters, digits and _; not starting with a digit."},
        widget=forms.TextInput(attrs={"spellcheck": "false", "placeholder": "name"}),
    )
    type = forms.ChoiceField(choices=[(t, t) for t in INPUT_TYPES], initial="string")
    required = forms.BooleanField(required=False, initial=True)
    description = forms.CharField(max_length=500, required=False)
    default = forms.CharField(
        required=False,
        help_text='JSON, e.g. "text", 3, true, [].',
        widget=forms.TextInput(attrs={"spellcheck": "false", "class": "mono"}),
    )

    def clean_default(self) -> Any:
        text = self.cleaned_data["default"].strip()
        return parse_json(text) if text else None


InputsFormSet = forms.formset_factory(InputRowForm, extra=1, can_delete=True)


def inputs_initial(definition: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, spec in (definition.get("inputs") or {}).items():
        rows.append(
            {
                "name": name,
                "type": spec.get("type", "string"),
                "required": bool(spec.get("required", False)),
                "description": spec.get("description", ""),
                "default": _json_text(spec["default"]) if "default" in spec else "",
            }
        )
    return rows


def inputs_from(formset: Any) -> dict[str, dict[str, Any]]:
    inputs: dict[str, dict[str, Any]] = {}
    for form in formset.forms:
        data = form.cleaned_data
        if not data or data.get("DELETE") or not data.get("name"):
            continue
        spec: dict[str, Any] = {"type": data["type"], "required": bool(data["required"])}
        if data.get("description"):
            spec["description"] = data["description"]
        if data.get("default") is not None:
            spec["default"] = data["default"]
        inputs[data["name"]] = spec
    return inputs


class WorkflowForm(forms.Form):
    name = forms.CharField(max_length=80)
    description = forms.CharField(
        max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    category = forms.CharField(max_length=40, required=False)


class WorkflowSettingsForm(WorkflowForm):
    """The builder's Details form: what creating one asks, and whether MCP clients may run it."""

    mcp_exposed = forms.BooleanField(
        required=False,
        label="Offer as an MCP tool",
        help_text="MCP clients holding an API key of this workspace with the run scope can run "
        "the published version as a tool, with its run inputs as arguments (see the MCP docs).",
    )


class SourceForm(forms.Form):
    base = forms.IntegerField(widget=forms.HiddenInput)
    format = forms.ChoiceField(choices=[("json", "JSON"), ("yaml", "YAML")], initial="json")
    text = forms.CharField(
        label="Definition",
        strip=False,
        max_length=500_000,
        widget=forms.Textarea(attrs={"rows": 28, "spellcheck": "false", "class": "mono"}),
    )
    note = forms.CharField(max_length=200, required=False, label="Version note")


class ImportForm(forms.Form):
    name = forms.CharField(
        max_length=80,
        required=False,
        help_text="Empty: the name in the file, if it has one.",
    )
    file = forms.FileField(required=False, label="Upload a file (.json, .yaml)")
    text = forms.CharField(
        required=False,
        strip=False,
        max_length=500_000,
        label="…or paste it",
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false", "class": "mono"}),
    )
    format = forms.ChoiceField(
        choices=[("", "Detect"), ("json", "JSON"), ("yaml", "YAML")], required=False
    )

    MAX_BYTES = 1_000_000

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        upload = data.get("file")
        if upload is not None:
            if upload.size > self.MAX_BYTES:
                raise forms.ValidationError("The file is larger than 1 MB.")
            try:
                data["text"] = upload.read().decode("utf-8")
            except UnicodeDecodeError as exc:
                raise forms.ValidationError("The file is not UTF-8 text.") from exc
            if not data.get("format"):
                lowered = upload.name.lower()
                if lowered.endswith(".json"):
                    data["format"] = "json"
                elif lowered.endswith((".yaml", ".yml")):
                    data["format"] = "yaml"
        if not (data.get("text") or "").strip():
            raise forms.ValidationError("Upload a file or paste a definition.")
        return data


class DescribeForm(forms.Form):
    description = forms.CharField(
        min_length=10,
        max_length=4000,
        label="What should the workflow do?",
        widget=forms.Textarea(
            attrs={
                "rows": 5,
                "placeholder": "e.g. When a support ticket arrives, classify its urgency; if "
                "urgent, page the on-call engineer, otherwise draft a reply for a human to "
                "approve.",
            }
        ),
    )


class DescribeCreateForm(forms.Form):
    name = forms.CharField(max_length=80)
    description = forms.CharField(max_length=500, required=False, widget=forms.HiddenInput)
    definition = JSONTextField(
        kind="object",
        label="Definition (JSON)",
        widget=forms.Textarea(attrs={"rows": 16, "spellcheck": "false", "class": "mono"}),
    )
