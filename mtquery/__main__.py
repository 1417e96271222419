from mtquery.cli import main

main()
