"""python3 -m prerank_torch train ... (see docs/TRAINING.md)."""
import argparse
import sys

from .errors import InputError, TrainingError


def parser():
    p = argparse.ArgumentParser(prog="python3 -m prerank_torch",
                                description="PyTorch trainer for prerank models (SPEC §1, §3); torchrun for data-parallel.")
    sub = p.add_subparsers(dest="verb", required=True)
    t = sub.add_parser("train", help="train both towers of every task jointly and write a model directory")
    t.add_argument("--features", help="features.yaml (tasks and features)")
    t.add_argument("--data", required=True, help="training CSV or Parquet file, or a directory of them")
    t.add_argument("--out", required=True, help="output model directory")
    t.add_argument("--arch", default=None, help="resflow (default), nse, nse+fr, nse+lr or esmm")
    t.add_argument("--clamp", action="store_true", help="clamp residual logits at 0 for k > 0")
    t.add_argument("--pos-weight", default="", help="positive weights per task, e.g. ctr=1,ctcvr=500")
    t.add_argument("--epochs", type=int, default=40,
                   help="epochs at most: a cap; a run ends when validation stops improving (--patience)")
    t.add_argument("--batch", type=int, default=512, help="global mini-batch size (split among processes)")
    t.add_argument("--lr", type=float, default=0.002, help="Adam learning rate")
    t.add_argument("--embedding-lr", type=float, default=None, help="learning rate of the tables (default: --lr)")
    t.add_argument("--embedding-l2", type=float, default=1e-4, help="L2 on the embedding rows a batch touches")
    t.add_argument("--seed", type=int, default=1, help="random seed (init and shuffling)")
    t.add_argument("--hidden", default="64,32", help="hidden widths, comma-separated (empty: linear towers)")
    t.add_argument("--d", "--dim", dest="d", type=int, default=32,
                   help="output width d (under torchrun write --dim: torchrun's own parser rejects --d as ambiguous)")
    t.add_argument("--validation-fraction", type=float, default=0.1, help="share of request ids held out")
    t.add_argument("--patience", type=int, default=2, help="epochs without validation improvement before stopping")
    t.add_argument("--skip-bad-rows", action="store_true", help="skip and count malformed rows instead of stopping")
    t.add_argument("--min-count", type=int, default=None,
                   help="feature admission: a categorical/multi bucket with fewer training values shares the field's "
                        "out-of-vocabulary row (0: off; default 5, 0 with --init-model)")
    t.add_argument("--id-fields", default=None,
                   help="id fields, comma-separated (default: categorical fields with ≥ 5000 buckets)")
    t.add_argument("--id-dropout", type=float, default=None,
                   help="probability that a training row reads an id field from the out-of-vocabulary row instead "
                        "(default 0.5, 0 with --init-model)")
    t.add_argument("--id-warmup-epochs", default=None,
                   help="warm start: id fields read the out-of-vocabulary row until validation stops improving (auto) "
                        "or for N epochs (at most --epochs − 1); then every id row starts from it (default auto, "
                        "0 with --init-model)")
    t.add_argument("--id-phase-lr-scale", type=float, default=0.1,
                   help="multiplies every learning rate from the first id epoch on")
    t.add_argument("--id-lr-scale", type=float, default=1.0, help="multiplies the embedding learning rate on id fields")
    t.add_argument("--id-dim", type=int, default=None, help="embedding dim of the id fields (default: features.yaml's)")
    t.add_argument("--weight-column", default=None,
                   help="numeric column (finite, ≥ 0) multiplying each row's loss on every task; "
                        "the batch loss is Σ w·ℓ / Σ w")
    t.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads per process (default 1: scale out with torchrun processes)")
    t.add_argument("--version", default=None, help="model version string")
    t.add_argument("--data-shards", type=int, default=0,
                   help="logical data shards, a multiple of the process count (default: the process count); "
                        "the same value gives the same training with any process count")
    t.add_argument("--workers", type=int, default=1, help="DataLoader worker processes per rank (0: in-process)")
    t.add_argument("--shuffle", default="auto",
                   help="full: prerank train's order (a permutation of every training row each epoch, same seed same "
                        "order; the training rows are held in memory); buffer: the streaming shuffle buffer; auto "
                        "(default): full up to 5M training rows per process, else buffer")
    t.add_argument("--shuffle-buffer", type=int, default=16384, help="rows of shuffle buffer in all, split among the data shards")
    t.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N (default: cuda:LOCAL_RANK if available; cuda: cuda:LOCAL_RANK)")
    t.add_argument("--amp", default="off", choices=["off", "bf16"],
                   help="bf16: run the towers under bfloat16 autocast (GPUs with bf16; the loss and the "
                        "optimiser state stay float32)")
    t.add_argument("--bf16", dest="amp", action="store_const", const="bf16", help="the same as --amp bf16")
    t.add_argument("--collective-timeout", type=float, default=600,
                   help="seconds a collective waits for the other processes before failing (torchrun)")
    t.add_argument("--checkpoint", default=None, help="checkpoint file (default: OUT/checkpoint.pt), written each epoch")
    t.add_argument("--no-checkpoint", action="store_true", help="do not write checkpoints")
    t.add_argument("--resume", nargs="?", const="", default=None,
                   help="continue from the checkpoint (default path, or the one given)")
    t.add_argument("--auto-resume", action="store_true",
                   help="resume from the checkpoint if there is one, else start afresh (for torchrun --max-restarts)")
    t.add_argument("--init-model", default=None, help="start from a prerank model directory (fine-tuning)")
    t.add_argument("--log-every", type=int, default=50, help="progress line every N steps (0: off)")
    t.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N steps (0: each epoch only)")
    t.add_argument("--stop-after-steps", type=int, default=0, help="checkpoint and stop after N steps (simulates an interruption)")
    t.add_argument("--crash-after-steps", type=int, default=0,
                   help="checkpoint and exit with status 75 after N steps, unless resumed (simulates a crash for "
                        "torchrun --max-restarts)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        if args.verb == "train":
            from .train import run
            run(args)
    except (InputError, TrainingError) as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
