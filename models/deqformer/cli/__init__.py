"""Command-line entry points: deqformer-train, deqformer-evaluate, deqformer-deploy."""
