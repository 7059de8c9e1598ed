"""The building blocks of the spec models: the value types of spec keys and the base models.

Every spec model subclasses ``SpecModel``; the value types (``Count``, ``Fraction``, ``Flag``, ...) carry the valid
range of each kind of key. Imports only pydantic, so the CLI and spec checks stay light.
"""

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, ValidationError

from slm_lab.errors import SpecError

__all__ = [
    "ComponentSpec",
    "Count",
    "Flag",
    "Fraction",
    "Frequency",
    "Int",
    "NonNegInt",
    "NonNegNumber",
    "Number",
    "PosNumber",
    "Seed",
    "SpecModel",
    "VarSchedulerSpec",
    "typed_section",
]


def _not_a_bool(value: Any) -> Any:
    # pydantic would read true as 1: a boolean is not a number here
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return value


# The value types of spec keys, with their valid ranges. Every number and boolean key uses one of these: a boolean
# given for a number (or a number or string for a boolean) is an error, and so are NaN and infinities.
Int = Annotated[int, BeforeValidator(_not_a_bool)]
Count = Annotated[Int, Field(ge=1)]  # how many: envs, sessions, epochs, layer widths, batch sizes
Frequency = Annotated[Int, Field(ge=1)]  # every how many frames, steps or episodes
NonNegInt = Annotated[Int, Field(ge=0)]  # frame and step offsets, indices
Number = Annotated[float, BeforeValidator(_not_a_bool)]
NonNegNumber = Annotated[Number, Field(ge=0.0)]
PosNumber = Annotated[Number, Field(gt=0.0)]
Fraction = Annotated[
    Number, Field(ge=0.0, le=1.0)
]  # discount factors, λ, exponents and coefficients in [0, 1]
# meta.random_seed: sessions add 100000·trial + 1000·session, and numpy and gymnasium take seeds below 2**32
Seed = Annotated[Int, Field(ge=0, le=2**31 - 1)]
Flag = StrictBool


class SpecModel(BaseModel):
    """Base of every spec model: unknown keys are dropped here (the loader warns about them)."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=(), allow_inf_nan=False)


class ComponentSpec(SpecModel):
    """A ``{name, **kwargs}`` spec for a torch class: the extra keys are its keyword arguments."""

    model_config = ConfigDict(extra="allow", protected_namespaces=(), allow_inf_nan=False)

    name: str

    @property
    def kwargs(self) -> dict[str, Any]:
        """Every key except ``name``, to pass to the class."""
        return dict(self.model_extra or {})


class VarSchedulerSpec(SpecModel):
    """A variable schedule over env frames. An absent ``end_val`` means ``start_val`` (D2)."""

    name: Literal["no_decay", "linear_decay", "rate_decay", "periodic_decay"]
    start_val: Number
    end_val: Number | None = None
    start_step: NonNegInt = 0
    end_step: NonNegInt = 0


def typed_section[M: SpecModel](section: Mapping[str, Any] | SpecModel, model: type[M], key: str) -> M:
    """A spec section as the model a component is built from, defaults filled in by the model and nowhere else.

    The loader validates whole specs and ``build_agent`` passes their models on, so a model of the right class
    passes through. A mapping (a routed actor or critic net, a part's own sub-spec, a notebook's dict) is validated
    here, its nulls dropped ("not set", as in a spec file); a bad value fails with one ``SpecError`` line per
    problem, each naming its ``key``."""
    if isinstance(section, model):
        return section
    if isinstance(section, SpecModel):
        section = section.model_dump(exclude_unset=True)
    try:
        return model.model_validate({k: v for k, v in section.items() if v is not None})
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join([key, *map(str, err['loc'])])}: {err['msg']}" for err in e.errors())
        raise SpecError(problems) from None
