from ocr_server.cli import main

main()
