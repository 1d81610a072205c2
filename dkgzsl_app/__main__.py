from dkgzsl_app.cli import main

main()
