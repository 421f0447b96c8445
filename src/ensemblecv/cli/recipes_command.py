"""``ensemblecv recipes``: the named presets, what each is for and what it was measured to reach."""

from __future__ import annotations

import typer


def recipes(
    name: str | None = typer.Argument(None, help="Show this recipe's keys as YAML."),
) -> None:
    """List the recipes (`recipe: NAME` in a config) with what they were measured to reach."""
    # Imported here, not at module level: the CLI must start fast (recipes are light anyway).
    import yaml
    from rich.table import Table

    from ..recipes import get_recipe, list_recipes
    from ._console import console

    if name is not None:
        recipe = get_recipe(name)
        console.print(f"[bold]{recipe.name}[/]: {recipe.description}")
        console.print(f"measured: {recipe.measured}")
        for note in recipe.notes:
            console.print(f"note: {note}")
        console.print(yaml.safe_dump(recipe.config, sort_keys=False).rstrip(), markup=False)
        return
    table = Table("recipe", "for", "measured", show_lines=True)
    for n in list_recipes():
        recipe = get_recipe(n)
        table.add_row(recipe.name, recipe.description, recipe.measured)
    console.print(table)
    console.print("Use one: `recipe: NAME` at the top of a config; any key you set overrides it.")


def register(app: typer.Typer) -> None:
    app.command("recipes")(recipes)
