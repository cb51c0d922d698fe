"""Building blocks of the U2++ model (see DESIGN.md); importing them checks the torch release."""

from wenet_eff import torch_version

torch_version.check()
