"""Input serializers take JSON as typed: a number where the schema says string, a string where
it says integer or boolean, is a 400 naming the field.

DRF coerces on its own (`-489` becomes the name "-489", `"5"` the integer 5, `"yes"` True),
so a request the OpenAPI document calls invalid would be accepted. Every API input serializer
derives from `InputSerializer`, which checks each supplied value's JSON type against its field
first, lists and dicts item by item; what DRF then validates (lengths, ranges, choices) is
unchanged."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from rest_framework import serializers
from rest_framework.fields import SkipField
from rest_framework.relations import PKOnlyObject
from rest_framework.settings import api_settings

_NUMBER = (int, float)


def _type_error(field: serializers.Field[Any, Any, Any, Any], value: Any) -> str | None:
    """Why `value` is not the JSON type `field` documents, or None when it is."""
    if value is None:
        return None  # allow_null decides
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "Must be true or false."
    if isinstance(value, bool) and not isinstance(field, serializers.JSONField):
        return "Must not be true or false."
    if isinstance(field, serializers.IntegerField):
        return None if isinstance(value, int) else "Must be a whole number."
    if isinstance(field, serializers.FloatField):
        return None if isinstance(value, _NUMBER) else "Must be a number."
    if isinstance(field, serializers.DecimalField):
        return _decimal_error(field, value)
    if isinstance(field, serializers.CharField | serializers.ChoiceField):
        if isinstance(field, serializers.MultipleChoiceField):
            return None
        return None if isinstance(value, str) else "Must be a string."
    if isinstance(field, serializers.ListField | serializers.DictField):
        return _item_error(field, value)
    return None


def _decimal_error(field: serializers.DecimalField, value: Any) -> str | None:
    as_string = getattr(field, "coerce_to_string", None)
    if as_string is None:
        as_string = api_settings.COERCE_DECIMAL_TO_STRING
    if as_string:
        return None if isinstance(value, str) else "Must be a decimal number in a string."
    return None if isinstance(value, _NUMBER) else "Must be a number."


def _item_error(field: serializers.ListField | serializers.DictField, value: Any) -> str | None:
    """The first item of a list or dict whose type is wrong, named by its index or key."""
    if isinstance(field, serializers.ListField) and isinstance(value, list):
        items: Any = enumerate(value)
        label = "Item {}: {}"
    elif isinstance(field, serializers.DictField) and isinstance(value, dict):
        items, label = value.items(), "{}: {}"
    else:
        return None
    for key, item in items:
        problem = _type_error(field.child, item)
        if problem:
            return label.format(key, problem)
    return None


class InputSerializer(serializers.Serializer[Any]):
    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            errors = {
                name: [problem]
                for name, field in self.fields.items()
                if not field.read_only
                and field.source_attrs  # skip `source="*"`
                and name in data
                and (problem := _type_error(field, data[name]))
            }
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


# Output fields whose to_representation depends on the field's own options only (no context,
# no parent, no request) and keeps no state: one bound copy can serve every response.
_STATELESS_OUTPUT_FIELDS: tuple[type, ...] = (
    serializers.BooleanField,
    serializers.CharField,
    serializers.ChoiceField,
    serializers.DateTimeField,
    serializers.DecimalField,
    serializers.FloatField,
    serializers.IntegerField,
    serializers.JSONField,
    serializers.ModelField,
)

# (output name, model attribute, to_representation) for a field served from the class's own
# copy; (output name, None, None) for one that goes through the instance's bound field.
_Step = tuple[str, str | None, Any]


class CachedFieldsMixin:
    """For output ModelSerializers whose fields depend on their class only (no context): the
    model introspection that builds them runs once per class, not on every response (it was a
    quarter of the agents list's time); each instance gets fresh copies of the fields to bind.

    Writing an object out follows a plan made once per class: a model field of a plain type
    (and a nested serializer with this mixin) is read with one `getattr` and written by the
    class's own bound copy of the field, skipping DRF's per-field lookup machinery and the
    per-response copies of the fields; any other field (a method field, a dotted source, one
    that reads the context) goes through DRF's usual path. The output is the same: each
    value is still turned into JSON by the same field's `to_representation` (decision 129).
    """

    _built_fields: dict[type, dict[str, Any]] = {}
    _plans: dict[type, list[_Step]] = {}

    def get_fields(self) -> dict[str, Any]:
        cls = type(self)
        built = CachedFieldsMixin._built_fields.get(cls)
        if built is None:
            built = super().get_fields()  # type: ignore[misc]
            CachedFieldsMixin._built_fields[cls] = built
        return {name: copy.deepcopy(field) for name, field in built.items()}

    @classmethod
    def _plan(cls) -> list[_Step]:
        plan = CachedFieldsMixin._plans.get(cls)
        if plan is None:
            plan = CachedFieldsMixin._plans[cls] = cls._make_plan()
        return plan

    @classmethod
    def _make_plan(cls) -> list[_Step]:
        prototype: Any = cls()
        model = prototype.Meta.model
        concrete = {f.name for f in model._meta.concrete_fields}
        plan: list[_Step] = []
        for name, field in prototype.fields.items():
            if field.write_only:
                continue
            attribute = field.source_attrs[0] if len(field.source_attrs) == 1 else None
            plain = type(field) in _STATELESS_OUTPUT_FIELDS or (
                isinstance(field, CachedFieldsMixin) and not getattr(field, "many", False)
            )
            if attribute in concrete and plain:
                plan.append((name, attribute, field.to_representation))
            else:
                plan.append((name, None, None))
        return plan

    def to_representation(self, instance: Any) -> dict[str, Any]:
        answer: dict[str, Any] = {}
        fields: Any = None
        for name, attribute, write in self._plan():
            if attribute is not None:
                value = getattr(instance, attribute)
                answer[name] = None if value is None else write(value)
                continue
            # DRF's own path (Serializer.to_representation) for this field.
            if fields is None:
                fields = self.fields  # type: ignore[attr-defined]
            field = fields[name]
            try:
                value = field.get_attribute(instance)
            except SkipField:
                continue
            check = value.pk if isinstance(value, PKOnlyObject) else value
            answer[name] = None if check is None else field.to_representation(value)
        return answer
