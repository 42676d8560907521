"""An import-linter contract of our own: no import cycles between the modules of a package.

import-linter's ``acyclic_siblings`` works on packages, and starterkit's feature packages
(``auth/``, ``users/``, ...) hold both a router and the service below it, so their packages
import each other by design while no module ever imports itself back. This contract looks at
modules: every import, ``TYPE_CHECKING`` and function-local ones included, and fails on the
first module that reaches itself again, naming the chain.

Registered in ``pyproject.toml`` (``[tool.importlinter] contract_types``); ``lint-imports``
puts the working directory on ``sys.path``, so it is found from the project root.
"""

from __future__ import annotations

from typing import Any

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


class AcyclicModulesContract(Contract):
    """No module of ``package`` imports (directly or not) a module that imports it."""

    type_name = "acyclic_modules"

    package = fields.StringField()

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        package = str(self.package)

        def inside(module: str) -> bool:
            return module == package or module.startswith(f"{package}.")

        modules = sorted(filter(inside, graph.modules))
        cycles: list[list[str]] = []
        seen: set[str] = set()
        for module in modules:
            if module in seen:
                continue
            for imported in sorted(graph.find_modules_directly_imported_by(module)):
                chain = graph.find_shortest_chain(importer=imported, imported=module)
                if chain is not None and inside(imported):
                    cycle = [module, *chain]
                    cycles.append(cycle)
                    seen.update(cycle)
                    break
        return ContractCheck(kept=not cycles, metadata={"cycles": cycles})

    def render_broken_contract(self, check: ContractCheck) -> None:
        cycles: Any = check.metadata["cycles"]
        for cycle in cycles:
            output.print_error(" -> ".join(cycle))
            output.new_line()
