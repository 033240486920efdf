"""Stand-in for the google.colab package inside a Colab runtime (only its userdata module)."""
