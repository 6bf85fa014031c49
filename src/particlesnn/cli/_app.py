"""The typer application every command module registers on."""
import typer

app = typer.Typer(
    name="particlesnn",
    help="Find, outline and measure nanoparticles in scanning probe microscope images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
