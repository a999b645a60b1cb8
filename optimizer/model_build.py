"""Child-process entry that builds one model into the cache: ``python -m optimizer.model_build NAME TARGET``.

Called by :func:`optimizer.embeddings.build_models`. Building imports torch, transformers,
model2vec and the ONNX exporter, which log at length through the root logger and warn; here,
in a process of its own, that is silenced without touching the caller's logging.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import warnings
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from optimizer.embeddings import BUILT

    parser = argparse.ArgumentParser(prog="python -m optimizer.model_build")
    parser.add_argument("name", choices=list(BUILT))
    parser.add_argument("target", type=Path)
    parser.add_argument("--force", action="store_true", help="replace a model already there")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)  # this process only builds
    warnings.simplefilter("ignore")
    if args.force and args.target.exists():
        shutil.rmtree(args.target)
    if args.name == "static":
        from optimizer.embeddings import build_static_model

        build_static_model(args.target)
    elif args.name == "static-distilled":
        from optimizer.embeddings import build_distilled_model

        build_distilled_model(args.target)
    else:
        from optimizer.minilm_int8 import build_int8_model

        build_int8_model(args.target)
    print(args.target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
