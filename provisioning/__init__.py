"""Where hosts come from: a Provider per cloud or session kind, all behind provisioning.base."""
