"""Stand-in for google.colab.userdata inside a Colab runtime. The real get() asks the
frontend for a secret from the notebook's Secrets panel, raising SecretNotFoundError when there
is none and NotebookAccessError when the notebook was not granted access; here the secrets
come from the JSON file FAKE_COLAB_SECRETS names."""

import json
import os


class SecretNotFoundError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(f"Secret {key} does not exist.")


class NotebookAccessError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(f"Notebook does not have access to secret {key}")


def get(key: str) -> str:
    with open(os.environ["FAKE_COLAB_SECRETS"]) as f:
        secrets = json.load(f)
    if key not in secrets:
        raise SecretNotFoundError(key)
    if secrets[key] is None:
        raise NotebookAccessError(key)
    return secrets[key]
