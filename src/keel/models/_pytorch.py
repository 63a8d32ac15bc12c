"""The ``pytorch`` flavor: weights as safetensors plus the module's importable class.

The architecture is code, so it is saved by reference: ``"module:Class"`` of the
model's class (it must be importable, i.e. not defined in ``__main__`` or inside a
function) and the constructor keyword arguments given as ``model_config``. Loading
imports the class, calls ``Class(**model_config)`` and loads the weights strictly.
TorchScript and non-importable classes need pickle, so only with ``unsafe_pickle``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from keel.exceptions import InvalidSpecError
from keel.models._errors import require
from keel.models._flavors import (
    Flavor,
    LoadOptions,
    Predictor,
    Saved,
    SaveOptions,
    as_array,
    check_config,
    class_path,
    import_class,
    pickle_load,
    pickle_save,
    versions,
)

if TYPE_CHECKING:
    from keel.models._spec import ModelSpec

__all__ = ["PyTorchFlavor"]

WEIGHTS_FILE = "model.safetensors"
SCRIPT_FILE = "model.pt"


def _check_rebuild(model: Any, cls: type, config: Mapping[str, Any], path: str) -> None:
    """Build a fresh instance now so a missing ``model_config`` fails at save, not at load."""
    if path.startswith("torch."):
        raise InvalidSpecError(
            f"A bare {cls.__qualname__} cannot be rebuilt from model_config. Define an "
            "nn.Module subclass that builds these layers in an importable module (not "
            "__main__) and save an instance of it, with its constructor arguments as "
            "model_config=...",
            path=path,
        )
    try:
        fresh = cls(**config)
    except Exception as exc:
        raise InvalidSpecError(
            f"Cannot rebuild {path} as {path.split(':')[1]}(**model_config) with "
            f"model_config={dict(config)!r}: {exc}. Pass the constructor's keyword "
            "arguments as model_config=... to save_model.",
            path=path,
        ) from exc
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    if want != got:
        diff = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
        raise InvalidSpecError(
            f"{path}(**model_config) does not have the saved model's parameters "
            f"(differences in: {', '.join(diff[:10])}). Pass the constructor arguments "
            "that build this architecture as model_config=...",
            path=path,
        )


class PyTorchFlavor(Flavor):
    """``torch.nn.Module`` models."""

    name: ClassVar[str] = "pytorch"
    formats: ClassVar[tuple[str, ...]] = ("safetensors", "torchscript", "cloudpickle")

    def matches(self, model: Any) -> bool:
        return any(
            f"{c.__module__}.{c.__qualname__}" == "torch.nn.modules.module.Module"
            for c in type(model).__mro__
        )

    def save(self, model: Any, directory: Path, options: SaveOptions) -> Saved:
        torch = require("torch", "to save PyTorch models")
        fmt = self.check_format(options)
        if isinstance(model, torch.jit.ScriptModule) and fmt == "safetensors":
            fmt = "torchscript"
        if fmt == "torchscript":
            if not isinstance(model, torch.jit.ScriptModule):
                raise InvalidSpecError(
                    "format='torchscript' needs a scripted or traced module "
                    "(torch.jit.script / torch.jit.trace)."
                )
            if not options.unsafe_pickle:
                raise InvalidSpecError(
                    "TorchScript files are pickle-based, and loading them may run arbitrary "
                    "code. Pass unsafe_pickle=True to save_model (and allow_unsafe=True to "
                    "load_model), or save the nn.Module itself (safetensors weights).",
                    reason="needs_pickle",
                )
            torch.jit.save(model, str(directory / SCRIPT_FILE))
            return Saved(
                format="torchscript",
                files=[SCRIPT_FILE],
                requirements=versions("torch"),
                unsafe=True,
            )
        path = class_path(type(model))
        if fmt == "cloudpickle" or path is None:
            saved = pickle_save(
                model,
                directory,
                options,
                f"{type(model).__qualname__} is defined in {type(model).__module__!r} and "
                "cannot be imported by path (it is in __main__ or inside a function), so "
                "keel cannot save it by reference; move it into an importable module.",
            )
            saved.requirements.update(versions("torch"))
            return saved
        config = check_config(options.model_config)
        _check_rebuild(model, type(model), config, path)
        safetensors_torch = require("safetensors.torch", "to save PyTorch weights")
        safetensors_torch.save_model(model, str(directory / WEIGHTS_FILE))
        return Saved(
            format="safetensors",
            files=[WEIGHTS_FILE],
            requirements=versions("torch", "safetensors"),
            flavor_config={"class": path, "model_config": config},
        )

    def load(self, directory: Path, spec: ModelSpec, options: LoadOptions) -> Predictor:
        torch = require("torch", "to load PyTorch models")
        if spec.format == "torchscript":
            model = torch.jit.load(str(directory / SCRIPT_FILE), map_location="cpu")
        elif spec.format == "cloudpickle":
            model = pickle_load(directory)
        else:
            cls = import_class(str(spec.flavor_config["class"]), torch.nn.Module, "PyTorch model")
            model = cls(**dict(spec.flavor_config.get("model_config", {})))
            safetensors_torch = require("safetensors.torch", "to load PyTorch weights")
            safetensors_torch.load_model(
                model, str(directory / WEIGHTS_FILE), strict=True, device="cpu"
            )
        model.eval()
        return self.wrap(model, spec.flavor_config)

    def wrap(self, raw: Any, flavor_config: Mapping[str, Any]) -> Predictor:
        torch = require("torch")

        def predict(X: Any) -> Any:
            param = next((p for p in raw.parameters() if p.is_floating_point()), None)
            dtype = param.dtype if param is not None else torch.float32
            device = param.device if param is not None else torch.device("cpu")
            tensor = torch.from_numpy(as_array(X, "float32")).to(device=device, dtype=dtype)
            was_training = raw.training
            raw.eval()
            try:
                with torch.no_grad():
                    out = raw(tensor)
            finally:
                raw.train(was_training)
            return _to_numpy(out)

        return Predictor(raw, predict)


def _to_numpy(out: Any) -> Any:
    if hasattr(out, "detach"):
        return out.detach().cpu().numpy()
    if isinstance(out, tuple | list):
        return type(out)(_to_numpy(o) for o in out)
    if isinstance(out, dict):
        return {k: _to_numpy(v) for k, v in out.items()}
    return out
