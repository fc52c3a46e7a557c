from ella_deploy.cli import run

run()
