"""The conformance tier: every worker's and frontend's command line through the real parsers of its Dynamo release."""
