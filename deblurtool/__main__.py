from deblurtool.cli import app

app(prog_name="deblurtool")
