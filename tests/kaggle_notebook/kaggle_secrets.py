"""Stand-in for the kaggle_secrets module inside a Kaggle notebook. The real UserSecretsClient
asks Kaggle's backend for the secrets a user attached to the notebook (Add-ons > Secrets) and
raises when one is not attached; here they come from the JSON file FAKE_KAGGLE_SECRETS names."""

import json
import os


class BackendError(Exception):
    pass


class UserSecretsClient:
    def get_secret(self, label: str) -> str:
        with open(os.environ["FAKE_KAGGLE_SECRETS"]) as f:
            secrets = json.load(f)
        if label not in secrets:
            raise BackendError("Unexpected response from the service. Response: {'errors': "
                               f"['No user secrets exist for kernel id 1 and label {label}']}}")
        return secrets[label]
