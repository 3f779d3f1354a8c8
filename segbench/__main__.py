from segbench.cli import app

app(prog_name="segbench")
