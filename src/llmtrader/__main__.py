from llmtrader.cli import main

main()
