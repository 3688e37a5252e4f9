.PHONY: setup quickstart test ui

setup:        ## virtualenv, dependencies, llama.cpp build, LanguageTool jars
	bash scripts/setup.sh

quickstart:   ## set up and write three articles on the embedded defaults
	bash scripts/quickstart.sh

test:         ## set up (with test tools) and run the whole test suite, as CI does
	bash scripts/test.sh

ui:           ## a local Prefect server with its UI on 127.0.0.1:4200, and the deployments served to it
	.venv/bin/copydesk server start && .venv/bin/copydesk serve
