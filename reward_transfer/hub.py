"""The one way every stage publishes to the Hugging Face Hub: private by default, and a failed push is one line
that says the local result is kept and how to retry the push alone."""

from pathlib import Path
from typing import Any

from reward_transfer.errors import UserError


def _failed(repo_id: str, err: Exception, retry: str) -> UserError:
    return UserError(f"push to the Hub as {repo_id} failed ({err.__class__.__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                     f"the local result is complete and kept; check HF_TOKEN and the network, then {retry}")


def push_folder(folder: Path, repo_id: str, private: bool, message: str, retry: str) -> str:
    """Upload a model directory to `repo_id` (created private unless `private=false`); returns the repo id."""
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=message)
    except Exception as err:  # the Hub client raises many types (offline, auth, HTTP)
        raise _failed(repo_id, err, retry) from err
    print(f"pushed {folder} to the Hub as {repo_id} ({'private' if private else 'public'})", flush=True)
    return repo_id


def push_dataset(dataset: Any, repo_id: str | None, private: bool, retry: str) -> str:
    """`DatasetDict.push_to_hub` with the same defaults and failure message."""
    if not repo_id:
        raise UserError("huggingface.push_to_hub=true needs huggingface.repo_id")
    try:
        dataset.push_to_hub(repo_id, private=private)
    except Exception as err:
        raise _failed(repo_id, err, retry) from err
    print(f"pushed the dataset to the Hub as {repo_id} ({'private' if private else 'public'})", flush=True)
    return repo_id
