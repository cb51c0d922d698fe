"""`python -m wenet_eff.bin.model_info CONFIG`: total and active parameters, per-module
breakdown and FLOPs per second of audio (see `wenet_eff.bench.model_info`)."""

from wenet_eff.bench.model_info import main

if __name__ == "__main__":
    main()
