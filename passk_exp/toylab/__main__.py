from passk_exp.toylab.cli import main

main()
