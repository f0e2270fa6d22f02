"""``neural_decoder``: a TorchScript module stored inline (bytes + sha256), latent → displacement.

The checkpoint is a deposition's own body (venue *inline*): moldb keeps the TorchScript bytes and
their sha256 and refuses bytes whose hash does not match. The module's contract is
``forward(z: Tensor[b, d]) -> Tensor[b, n*3] or Tensor[b, n, 3]``; ``output="absolute"`` modules
emit coordinates and the operator returns them minus ``x_ref`` (the chapter's normalisation to
displacements). torch is imported inside functions only.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from moldb.errors import ValidationError

__all__ = ["NeuralDecoder", "script_to_bytes"]


def script_to_bytes(module: Any) -> tuple[bytes, str]:
    """Serialise a ``torch.nn.Module`` as TorchScript; returns ``(bytes, sha256 hex)``."""
    import torch

    scripted = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module.eval())
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    blob = buf.getvalue()
    return blob, hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class NeuralDecoder:
    """An inline TorchScript decoder with its content hash.

    Parameters
    ----------
    blob : bytes
        ``torch.jit.save`` output.
    sha256 : str
        Hex digest the blob must have; checked on construction.
    n_atoms, latent_dim : int
        Declared output atoms and latent size (checked on every call).
    output : {"displacement", "absolute"}
        What the network emits.
    """

    blob: bytes
    sha256: str
    n_atoms: int
    latent_dim: int
    output: Literal["displacement", "absolute"] = "displacement"
    _modules: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        got = hashlib.sha256(self.blob).hexdigest()
        if got != self.sha256:
            raise ValidationError(
                f"neural decoder bytes hash to {got}, not the declared {self.sha256}; the checkpoint was altered"
            )
        if self.output not in ("displacement", "absolute"):
            raise ValidationError(f"neural decoder output must be 'displacement' or 'absolute', not {self.output!r}")

    def module(self, device: str = "cpu") -> Any:
        """The loaded ``torch.jit.ScriptModule`` on ``device`` (loaded once per device)."""
        if device not in self._modules:
            import torch

            m = torch.jit.load(io.BytesIO(self.blob), map_location=device)
            m.eval()
            self._modules[device] = m
        return self._modules[device]

    def __call__(self, latent: Any, x_ref: Any = None, device: str = "cpu") -> Any:
        """Decode latents to displacements.

        Parameters
        ----------
        latent : ndarray or Tensor, shape (d,) or (b, d)
        x_ref : ndarray or Tensor, shape (n, 3), optional
            Required when ``output == "absolute"``.
        device : str
            torch device the module runs on (``"cpu"``, ``"cuda"``).

        Returns
        -------
        torch.Tensor, shape (n, 3) or (b, n, 3), on ``device``, dtype of the module output
        """
        import torch

        z = torch.as_tensor(np.array(latent) if not isinstance(latent, torch.Tensor) else latent)
        single = z.ndim == 1
        z = z.reshape(-1, self.latent_dim).to(device=device, dtype=torch.float32)
        with torch.no_grad():
            out = self.module(device)(z)
        out = out.reshape(z.shape[0], self.n_atoms, 3)
        if self.output == "absolute":
            if x_ref is None:
                raise ValidationError("an 'absolute' neural decoder needs x_ref to turn coordinates into displacements")
            ref = torch.as_tensor(np.array(x_ref) if not isinstance(x_ref, torch.Tensor) else x_ref)
            out = out - ref.to(device=device, dtype=out.dtype)
        return out[0] if single else out
