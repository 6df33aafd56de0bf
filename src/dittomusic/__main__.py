from dittomusic.cli import main

main()
