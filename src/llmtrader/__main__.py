from llmtrader.cli.app import main

main()
