"""The CPU rehearsal: a recipe deployed locally with the Dynamo frontend and mocker workers."""
