"""The orchestrator: the services and their one composition root, the decision cycle and its steps (snapshot,
decide, execution, reconcile), the scheduler and the agent's status."""
