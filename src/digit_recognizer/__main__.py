from digit_recognizer.start import run

run()
