from crailpy.cli import main

main(prog_name="crailpy")
