"""What operators read: observers, run history, metrics, alerts, the runbook and its
rendering, and the control plane through delta-rs."""
