from keeper.cli import app

app(prog_name="keeper")
