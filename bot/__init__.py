"""Front ends over the metrics package: the Slack app (Bolt), its servers, and the CLI.

Dependencies point one way: ``bot`` → ``metrics`` → ``storage``. Nothing in ``metrics``
knows about Slack; everything Slack-shaped (Block Kit, ack deadlines, retries, signatures)
lives here.
"""
