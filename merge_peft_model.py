"""Merge a trained LoRA reward-model adapter into its base: `python merge_peft_model.py --model_name DIR`."""

import argparse

from reward_transfer.cli import entry_point
from reward_transfer.merging import merge_adapter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base_model", default=None,
                        help="base model (default: the base the adapter was trained on)")
    parser.add_argument("--model_name", required=True, help="adapter directory or Hub repo")
    parser.add_argument("--output_dir", default=None,
                        help="where to write the merged model (default: <model_name>-merged)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an output_dir holding another merge (the same merge is kept as it is)")
    parser.add_argument("--push_to_hub", action="store_true", help="also upload the merged model to the Hub")
    parser.add_argument("--repo_id", default=None, help="Hub repo to push to (default: the output folder's name)")
    visibility = parser.add_mutually_exclusive_group()
    visibility.add_argument("--private", dest="private", action="store_true", default=True,
                            help="create the Hub repo private (the default, as every stage's push)")
    visibility.add_argument("--public", dest="private", action="store_false", help="create the Hub repo public")
    args = parser.parse_args()
    with entry_point():
        merge_adapter(args.base_model, args.model_name, args.output_dir, args.push_to_hub, repo_id=args.repo_id,
                      private=args.private, overwrite=args.overwrite)


if __name__ == "__main__":
    main()
