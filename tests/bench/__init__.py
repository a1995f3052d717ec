"""``make bench``: trust-agent against Ansible, pyinfra and two SSH floors, on one lab fleet, in one run.

See README.md in this directory for the job, what is measured and how, and where the time goes.
"""
