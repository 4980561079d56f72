"""Docker tests share the lab tests' fixtures: a private registry, and no leftovers at the end."""

from tests.lab.conftest import no_leftovers, registry, root_required  # noqa: F401  (fixtures used here)
