from passk_exp.cli import main

main()
