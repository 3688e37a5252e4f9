.PHONY: setup quickstart test services-start services-stop ui bench

setup:        ## virtualenv, dependencies, llama.cpp build, LanguageTool jars
	bash scripts/setup.sh

quickstart:   ## set up and write three articles on the embedded defaults
	bash scripts/quickstart.sh

test:         ## set up (with test tools) and run the whole test suite, as CI does
	bash scripts/test.sh
