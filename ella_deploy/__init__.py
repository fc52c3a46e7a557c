"""ella-deploy: deploys and operates ELLA in production through Ansible roles.

Python decides (what to run, whether it is safe, how to report it); Ansible acts on hosts.
"""

__version__ = "0.1.0"
