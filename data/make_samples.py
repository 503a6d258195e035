#!/usr/bin/env python3
"""Generate the project's own small synthetic NER sample corpora into data/samples/.

Everything here is written by the project: parallel English/Spanish sentence templates
(news style: sports, politics, business, travel, weather, culture) and gazetteers of
entity names. Nothing is taken from a real corpus. Output (see data/README.md):

    en_train.conll   labeled English training sentences
    en_dev.conll     labeled English development sentences
    es_train.conll   the Spanish twin of every en_train sentence (same order), gold-tagged
    es_unlabeled.txt Spanish sentences, one per line, tokens separated by single spaces
    es_dev.conll     labeled Spanish development sentences
    es_test.conll    labeled Spanish test sentences

Stdlib only and deterministic (seeded random.Random streams, no set/dict-order dependence):
running it twice writes byte-identical files. `python data/make_samples.py [OUT_DIR]`
(default: data/samples next to this script); `main(out_dir)` does the same from Python.

Gazetteer split: in every pool, each third entry (index % 3 == 2) is held out for the
Spanish dev/test sentences (unless the same name is a training entry of another pool);
en_train/es_train/en_dev draw only from the other entries, es_dev/es_test draw a held-out
entry 60% of the time (else a training one), and es_unlabeled draws from the whole pool
(like real unlabeled target-language text).

Annotation follows CoNLL-2003 conventions in both languages: articles are outside entities
("the European Union" -> O B-ORG I-ORG, "la Unión Europea" -> O B-ORG I-ORG), and nationality
adjectives are MISC in both (English "German", Spanish "alemán"), so that each es_train
sentence has exactly the entity types of its English twin. (CoNLL-2002 Spanish leaves
lowercase nationality adjectives untagged.)
"""

from __future__ import annotations

import random
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SEED = 20240611
OUT_DIR = Path(__file__).resolve().parent / "samples"
SIZES = {"en_train": 300, "en_dev": 60, "es_unlabeled": 400, "es_dev": 60, "es_test": 150}
MIN_TOKENS, MAX_TOKENS = 5, 25
HELD_OUT_SHARE = 0.6  # es_dev/es_test: chance of drawing a held-out (never-trained) entry

# ---------------------------------------------------------------------------------------------
# Gazetteers. One entry per line: "English = Spanish" or a single form used by both.
# Persons are written once (names are not translated); " (f)" marks a woman (Spanish agreement).
# Nationalities: "English adjective = Spanish masc. = Spanish fem. = English noun[/noun fem.]".
# A leading lowercase article ("the", "el", "la", "un", ...) is outside the entity (tag O);
# "^" marks where the entity starts when more lowercase words precede it ("el golfo de ^Vizcaya").
# ---------------------------------------------------------------------------------------------

PERSONS = {
    "pol": """
        Pedro Sánchez
        Alberto Núñez Feijóo
        Yolanda Díaz (f)
        Isabel Díaz Ayuso (f)
        Santiago Abascal
        Emmanuel Macron
        Olaf Scholz
        Ursula von der Leyen (f)
        Giorgia Meloni (f)
        Keir Starmer
        António Costa
        Claudia Sheinbaum (f)
        Gustavo Petro
        Gabriel Boric
        Javier Milei
        Luiz Inácio Lula da Silva
        Josep Borrell
        Teresa Ribera (f)
        Nadia Calviño (f)
        Margarita Robles (f)
        Félix Bolaños
        José Manuel Albares
        Salvador Illa
        Carles Puigdemont
        Íñigo Urkullu
        Juanma Moreno
        María Jesús Montero (f)
        Ada Colau (f)
        José Luis Martínez-Almeida
        Alfonso Rueda
        Roberta Metsola (f)
        Mark Rutte
        Xóchitl Gálvez (f)
        Dina Boluarte (f)
        Luis Arce
        Yamandú Orsi
    """,
    "biz": """
        Amancio Ortega
        Marta Ortega (f)
        Ana Botín (f)
        Ignacio Sánchez Galán
        José María Álvarez-Pallete
        Carlos Torres Vila
        Josu Jon Imaz
        Óscar García Maceiras
        María Dolores Dancausa (f)
        Gonzalo Gortázar
        Elon Musk
        Tim Cook
        Satya Nadella
        Pablo Isla
        Juan Roig
        Cristina Garmendia (f)
        Helena Herrero (f)
        Carlos Slim
        Rosauro Varo
        Belén Garijo (f)
    """,
    "cult": """
        Pedro Almodóvar
        Penélope Cruz (f)
        Javier Bardem
        Antonio Banderas
        Rosalía (f)
        Alejandro Sanz
        Shakira (f)
        Mario Vargas Llosa
        Isabel Allende (f)
        Almudena Grandes (f)
        Elena Poniatowska (f)
        Alejandro Amenábar
        Icíar Bollaín (f)
        Juan Antonio Bayona
        Carla Simón (f)
        Rodrigo Sorogoyen
        Guillermo del Toro
        Joan Manuel Serrat
        Luz Casal (f)
        Paco de Lucía
        Ana Belén (f)
    """,
    "fut": """
        Lionel Messi
        Cristiano Ronaldo
        Kylian Mbappé
        Vinícius Júnior
        Luka Modrić
        Pedri
        Gavi
        Lamine Yamal
        Álvaro Morata
        Dani Olmo
        Nico Williams
        Rodri
        Jude Bellingham
        Erling Haaland
        Robert Lewandowski
        Antoine Griezmann
        Iñaki Williams
        Mikel Oyarzabal
        Alexia Putellas (f)
        Aitana Bonmatí (f)
        Jennifer Hermoso (f)
        Salma Paralluelo (f)
        Mariona Caldentey (f)
        Irene Paredes (f)
        Iago Aspas
        Julián Álvarez
        Federico Valverde
        Ángel Correa
        Raphinha
    """,
    "ten": """
        Rafael Nadal
        Carlos Alcaraz
        Novak Djokovic
        Jannik Sinner
        Daniil Medvedev
        Alexander Zverev
        Paula Badosa (f)
        Garbiñe Muguruza (f)
        Iga Świątek (f)
        Aryna Sabalenka (f)
        Coco Gauff (f)
        Alejandro Davidovich Fokina
        Pablo Carreño
        Jessica Bouzas (f)
        Roberto Bautista
        Sara Sorribes (f)
    """,
    "cyc": """
        Tadej Pogačar
        Jonas Vingegaard
        Remco Evenepoel
        Primož Roglič
        Enric Mas
        Mikel Landa
        Juan Ayuso
        Carlos Rodríguez
        Alejandro Valverde
        Egan Bernal
        Richard Carapaz
        Wout van Aert
        Pello Bilbao
        Marc Soler
    """,
    "oth": """
        Mireia Belmonte (f)
        Carolina Marín (f)
        Ona Carbonell (f)
        Ana Peleteiro (f)
        Saúl Craviotto
        Lydia Valentín (f)
        Teresa Perales (f)
        Sandra Sánchez (f)
        Ray Zapata
        Simone Biles (f)
        Katie Ledecky (f)
        Armand Duplantis
        Eliud Kipchoge
        Jordan Díaz
        María Pérez (f)
        Álvaro Martín
        Yulimar Rojas (f)
    """,
    "drv": """
        Fernando Alonso
        Carlos Sainz
        Max Verstappen
        Lewis Hamilton
        Charles Leclerc
        Lando Norris
        Sergio Pérez
        Oscar Piastri
        Marc Márquez
        Álex Márquez
        Jorge Martín
        Francesco Bagnaia
        Fabio Quartararo
        Pedro Acosta
    """,
    "coach": """
        Carlo Ancelotti
        Diego Simeone
        Luis Enrique
        Pep Guardiola
        José Mourinho
        Unai Emery
        Mikel Arteta
        Ernesto Valverde
        Imanol Alguacil
        Marcelino García Toral
        Julen Lopetegui
        Luis de la Fuente
        Hansi Flick
        Xabi Alonso
        Montse Tomé (f)
        Emma Hayes (f)
        Manuel Pellegrini
        Marcelo Gallardo
    """,
}

NAMES = {
    "LOC": {
        "city": """
            Madrid
            Barcelona
            Seville = Sevilla
            Valencia
            Bilbao
            Zaragoza
            Málaga
            Granada
            Salamanca
            Pamplona
            San Sebastián
            Oviedo
            Valladolid
            Cádiz
            Alicante
            Palma
            Vigo
            Gijón
            Córdoba
            Santiago de Compostela
            Las Palmas
            London = Londres
            Paris = París
            Berlin = Berlín
            Rome = Roma
            Lisbon = Lisboa
            Brussels = Bruselas
            New York = Nueva York
            Washington
            Mexico City = Ciudad de México
            Buenos Aires
            Bogotá
            Lima
            Moscow = Moscú
            Beijing = Pekín
            Tokyo = Tokio
            Munich = Múnich
            Milan = Milán
            Geneva = Ginebra
            Vienna = Viena
            Athens = Atenas
            Amsterdam = Ámsterdam
            Dublin = Dublín
            Stockholm = Estocolmo
            Warsaw = Varsovia
            Los Angeles = Los Ángeles
            Havana = La Habana
            Caracas
            Montevideo
            Quito
            Cape Town = Ciudad del Cabo
            Marrakesh = Marrakech
            Istanbul = Estambul
            Edinburgh = Edimburgo
            Strasbourg = Estrasburgo
            Copenhagen = Copenhague
        """,
        "country": """
            Spain = España
            France = Francia
            Germany = Alemania
            Italy = Italia
            Portugal
            the United Kingdom = el Reino Unido
            the United States = Estados Unidos
            Mexico = México
            Argentina
            Colombia
            Chile
            Peru = Perú
            Brazil = Brasil
            Japan = Japón
            China
            Russia = Rusia
            Morocco = Marruecos
            Greece = Grecia
            the Netherlands = los Países Bajos
            Belgium = Bélgica
            Switzerland = Suiza
            Sweden = Suecia
            Norway = Noruega
            Poland = Polonia
            Ireland = Irlanda
            Turkey = Turquía
            Egypt = Egipto
            Canada = Canadá
            Uruguay
            Venezuela
            Ecuador
            Cuba
            India
            Australia
            South Africa = Sudáfrica
            Austria
            Denmark = Dinamarca
            Croatia = Croacia
            Algeria = Argelia
            Ukraine = Ucrania
            the Dominican Republic = la República Dominicana
            Costa Rica
        """,
        "region": """
            Catalonia = Cataluña
            Andalusia = Andalucía
            Galicia
            the Basque Country = el País Vasco
            Castile and León = Castilla y León
            Castile-La Mancha = Castilla-La Mancha
            Aragon = Aragón
            Asturias
            Cantabria
            Navarre = Navarra
            Murcia
            Extremadura
            La Rioja
            the Balearic Islands = las Islas Baleares
            the Canary Islands = las Islas Canarias
            the Valencian Community = la Comunidad Valenciana
            the Community of Madrid = la Comunidad de Madrid
            Tuscany = Toscana
            Bavaria = Baviera
            Brittany = Bretaña
            Patagonia
            Normandy = Normandía
            Scotland = Escocia
            Wales = Gales
            Sicily = Sicilia
            Provence = Provenza
            Lombardy = Lombardía
            the Algarve = el Algarve
            Quebec
            Florida
            California
        """,
        "range": """
            the Pyrenees = los Pirineos
            the Picos de Europa = los Picos de Europa
            the Sierra Nevada = Sierra Nevada
            the Alps = los Alpes
            the Andes = los Andes
            the Sierra de Guadarrama = la Sierra de Guadarrama
            the Cantabrian Mountains = la cordillera ^Cantábrica
            the Sierra de Gredos = la Sierra de Gredos
            the Montes de Toledo = los Montes de Toledo
            the Dolomites = los Dolomitas
            Mont Blanc = el Mont Blanc
            the Sierra Morena = Sierra Morena
            Mount Teide = el Teide
            the Moncayo = el Moncayo
        """,
        "river": """
            the Ebro = el Ebro
            the Tagus = el Tajo
            the Douro = el Duero
            the Guadalquivir = el Guadalquivir
            the Miño = el Miño
            the Júcar = el Júcar
            the Segura = el Segura
            the Guadiana = el Guadiana
            the Seine = el Sena
            the Danube = el Danubio
            the Rhine = el Rin
            the Thames = el Támesis
            the Po = el Po
            the Nalón = el Nalón
            the Turia = el Turia
            the Pisuerga = el Pisuerga
        """,
        "sea": """
            the Mediterranean = el Mediterráneo
            the Atlantic = el Atlántico
            the Bay of Biscay = el golfo de ^Vizcaya
            the Cantabrian Sea = el mar ^Cantábrico
            the Alboran Sea = el mar de ^Alborán
            the Strait of Gibraltar = el estrecho de ^Gibraltar
            the Balearic Sea = el mar ^Balear
            the Gulf of Cádiz = el golfo de ^Cádiz
            the Gulf of Roses = el golfo de ^Rosas
        """,
    },
    "ORG": {
        "club": """
            Real Madrid = el Real Madrid
            Barcelona = el Barcelona
            Atlético Madrid = el Atlético de Madrid
            Sevilla = el Sevilla
            Valencia = el Valencia
            Athletic Bilbao = el Athletic Club
            Real Sociedad = la Real Sociedad
            Villarreal = el Villarreal
            Real Betis = el Real Betis
            Celta Vigo = el Celta de Vigo
            Osasuna
            Girona = el Girona
            Getafe = el Getafe
            Rayo Vallecano = el Rayo Vallecano
            Mallorca = el Mallorca
            Deportivo La Coruña = el Deportivo de La Coruña
            Real Zaragoza = el Real Zaragoza
            Sporting Gijón = el Sporting de Gijón
            Real Oviedo = el Real Oviedo
            Espanyol = el Espanyol
            Manchester United = el Manchester United
            Manchester City = el Manchester City
            Liverpool = el Liverpool
            Chelsea = el Chelsea
            Arsenal = el Arsenal
            Bayern Munich = el Bayern de Múnich
            Borussia Dortmund = el Borussia Dortmund
            Juventus = la Juventus
            AC Milan = el Milan
            Inter Milan = el Inter de Milán
            Paris Saint-Germain = el Paris Saint-Germain
            Benfica = el Benfica
            Porto = el Oporto
            Ajax = el Ajax
            Boca Juniors
            River Plate
            Flamengo = el Flamengo
            Club América = el América
        """,
        "company": """
            Telefónica
            Iberdrola
            Repsol
            Inditex
            Santander = el Banco Santander
            BBVA = el BBVA
            CaixaBank
            Mapfre
            Mercadona
            El Corte Inglés
            Ferrovial
            Acciona
            Endesa
            Naturgy
            Indra
            Grifols
            Sabadell = el Banco Sabadell
            Bankinter
            Meliá
            Siemens
            Airbus
            Google
            Apple
            Microsoft
            Amazon
            Nestlé
            Unilever
            Samsung
            Vodafone
            Puig
            Cepsa
            Pescanova
            Mahou
            Ebro Foods
            Técnicas Reunidas
            ArcelorMittal
            Sacyr
            Talgo
        """,
        "auto": """
            Seat
            Renault
            Volkswagen
            Stellantis
            Toyota
            Ford
            Mercedes-Benz
            BMW
            Hyundai
            Tesla
            BYD
            Cupra
            Nissan
            Kia
        """,
        "intl": """
            the European Union = la Unión Europea
            the United Nations = las Naciones Unidas
            NATO = la OTAN
            the IMF = el FMI
            the European Commission = la Comisión Europea
            the World Health Organization = la Organización Mundial de la Salud
            the OECD = la OCDE
            the World Bank = el Banco Mundial
            the European Parliament = el Parlamento Europeo
            the Council of Europe = el Consejo de Europa
            the African Union = la Unión Africana
            the Organization of American States = la Organización de Estados Americanos
            UNESCO = la Unesco
            the G20 = el G20
            Mercosur
            the World Trade Organization = la Organización Mundial del Comercio
            the International Energy Agency = la Agencia Internacional de la Energía
            UNICEF = Unicef
        """,
        "stat": """
            the National Statistics Institute = el Instituto Nacional de Estadística
            Eurostat
            the OECD = la OCDE
            the IMF = el FMI
            the Ministry of Labour = el Ministerio de Trabajo
            the Bank of Spain = el Banco de España
            the Ministry of Finance = el Ministerio de Hacienda
            the Social Security = la Seguridad Social
            the Independent Fiscal Authority = la Autoridad Independiente de Responsabilidad Fiscal
            Funcas
            the World Bank = el Banco Mundial
            the Public Employment Service = el Servicio Público de Empleo Estatal
        """,
        "regulator": """
            the European Commission = la Comisión Europea
            the CNMC = la CNMC
            the CNMV = la CNMV
            the Bank of Spain = el Banco de España
            the Federal Trade Commission = la Comisión Federal de Comercio
            the Competition and Markets Authority = la Autoridad de Competencia y Mercados
            the Federal Cartel Office = la Oficina Federal de Cárteles
            the Catalan Competition Authority = la Autoridad Catalana de la Competencia
            the Italian Competition Authority = la Autoridad Italiana de la Competencia
            the Spanish Data Protection Agency = la Agencia Española de Protección de Datos
        """,
        "court": """
            the Supreme Court = el Tribunal Supremo
            the Constitutional Court = el Tribunal Constitucional
            the National Court = la Audiencia Nacional
            the High Court of Madrid = el Tribunal Superior de Justicia de Madrid
            the Court of Justice of the European Union = el Tribunal de Justicia de la Unión Europea
            the European Court of Human Rights = el Tribunal Europeo de Derechos Humanos
            the High Court of Catalonia = el Tribunal Superior de Justicia de Cataluña
            the Court of Auditors = el Tribunal de Cuentas
            the High Court of Andalusia = el Tribunal Superior de Justicia de Andalucía
            the Council of State = el Consejo de Estado
        """,
        "police": """
            the Civil Guard = la Guardia Civil
            the National Police = la Policía Nacional
            the Mossos d'Esquadra = los Mossos d'Esquadra
            the Ertzaintza = la Ertzaintza
            Maritime Rescue = Salvamento Marítimo
            the Red Cross = la Cruz Roja
            the Military Emergencies Unit = la Unidad Militar de Emergencias
            Interpol = la Interpol
            Europol
            the Carabinieri = los Carabinieri
            the Gendarmerie = la Gendarmería
            the Municipal Police = la Policía Municipal
        """,
        "party": """
            the Socialist Party = el Partido Socialista
            PSOE = el PSOE
            the People's Party = el Partido Popular
            PP = el PP
            Vox
            Sumar
            Podemos
            ERC
            Junts
            the PNV = el PNV
            EH Bildu
            Más Madrid
            Coalición Canaria
            the BNG = el BNG
            Compromís
            the Labour Party = el Partido Laborista
            the Conservative Party = el Partido Conservador
            the Democratic Party = el Partido Demócrata
            the Republican Party = el Partido Republicano
            Morena
            the CDU = la CDU
        """,
        "media": """
            Reuters
            EFE
            Europa Press
            El País
            El Mundo
            La Vanguardia
            ABC
            RTVE
            Marca
            the BBC = la BBC
            CNN
            The New York Times
            Le Monde
            Cadena SER = la Cadena SER
            Antena 3
            Telecinco
            The Guardian
            Bloomberg
            El Periódico
            La Voz de Galicia
            Clarín
            El Tiempo
        """,
        "airline": """
            Iberia
            Vueling
            Air Europa
            Ryanair
            easyJet
            Lufthansa
            Air France
            British Airways
            KLM
            Aeroméxico
            Avianca
            LATAM
            Volotea
            Binter
            TAP Air Portugal
            Emirates
            Qatar Airways
            Iberojet
        """,
        "rail": """
            Renfe
            Ouigo
            Iryo
            SNCF
            Deutsche Bahn
            Eurostar
            Trenitalia
            Adif
            Alsa
            Euskotren
            Madrid Metro = el Metro de Madrid
            Rodalies
        """,
        "team": """
            Movistar
            UAE Team Emirates
            Visma-Lease a Bike
            Ineos Grenadiers
            Soudal Quick-Step
            Bahrain Victorious
            EF Education-EasyPost
            Euskaltel-Euskadi
            Caja Rural
            Kern Pharma
            Lotto Dstny
            Cofidis
            Decathlon AG2R
            Groupama-FDJ
            Lidl-Trek
            Red Bull-Bora
        """,
        "weather": """
            AEMET = la AEMET
            Meteocat
            Euskalmet
            MeteoGalicia
            the Met Office = la Met Office
            Météo-France
            the National Hurricane Center = el Centro Nacional de Huracanes
            the World Meteorological Organization = la Organización Meteorológica Mundial
            Meteored
            IPMA = el IPMA
            the National Weather Service = el Servicio Meteorológico Nacional
            the Copernicus Climate Service = el Servicio de Cambio Climático de Copernicus
        """,
        "bank": """
            the European Central Bank = el Banco Central Europeo
            the Bank of Spain = el Banco de España
            the Federal Reserve = la Reserva Federal
            the Bank of England = el Banco de Inglaterra
            the Bank of Japan = el Banco de Japón
            the Swiss National Bank = el Banco Nacional Suizo
            the Bank of Mexico = el Banco de México
            the Central Bank of Chile = el Banco Central de Chile
            the Bank of Canada = el Banco de Canadá
        """,
        "museum": """
            the Prado Museum = el Museo del Prado
            the Reina Sofía Museum = el Museo Reina Sofía
            the Guggenheim Museum = el Museo Guggenheim
            the Thyssen-Bornemisza Museum = el Museo Thyssen-Bornemisza
            the Louvre = el Louvre
            the British Museum = el Museo Británico
            the Picasso Museum = el Museo Picasso
            the Tate Modern = la Tate Modern
            the Metropolitan Museum = el Museo Metropolitano
            the Bilbao Fine Arts Museum = el Museo de Bellas Artes de Bilbao
            the Sorolla Museum = el Museo Sorolla
            the Dalí Theatre-Museum = el Teatro-Museo Dalí
        """,
    },
    "MISC": {
        "cup": """
            the Champions League = la Liga de Campeones
            the Copa del Rey = la Copa del Rey
            the Europa League = la Europa League
            the Club World Cup = el Mundial de Clubes
            the Spanish Super Cup = la Supercopa de España
            the FA Cup = la FA Cup
            the Copa Libertadores = la Copa Libertadores
            the Conference League = la Conference League
            the Women's Champions League = la Liga de Campeones Femenina
            the Copa de la Reina = la Copa de la Reina
            the Copa Sudamericana = la Copa Sudamericana
            the DFB-Pokal = la DFB-Pokal
        """,
        "league": """
            La Liga = LaLiga
            the Premier League = la Premier League
            Serie A = la Serie A
            the Bundesliga = la Bundesliga
            Ligue 1 = la Ligue 1
            the Eredivisie = la Eredivisie
            the Primeira Liga = la Primeira Liga
            Liga F
            the Segunda División = la Segunda División
            Liga MX = la Liga MX
            the Argentine Primera División = la Primera División Argentina
            the Brasileirão = el Brasileirão
        """,
        "tennis": """
            Wimbledon
            Roland Garros
            the Australian Open = el Abierto de Australia
            the US Open = el Abierto de Estados Unidos
            the Madrid Open = el Mutua Madrid Open
            the Barcelona Open = el Trofeo Conde de Godó
            the ATP Finals = las Finales ATP
            Indian Wells
            the Miami Open = el Masters de Miami
            the Rome Masters = el Masters de Roma
            the Monte Carlo Masters = el Masters de Montecarlo
            the WTA Finals = las Finales WTA
        """,
        "tour": """
            the Tour de France = el Tour de Francia
            the Vuelta a España = la Vuelta a España
            the Giro d'Italia = el Giro de Italia
            the Tour of the Basque Country = la Vuelta al País Vasco
            the Critérium du Dauphiné = el Critérium del Dauphiné
            Paris-Nice = la París-Niza
            the Volta a Catalunya = la Volta a Cataluña
            Tirreno-Adriatico = la Tirreno-Adriático
            the Tour de Suisse = la Vuelta a Suiza
            the Vuelta a Burgos = la Vuelta a Burgos
            the Tour of Andalusia = la Vuelta a Andalucía
            the Tour Down Under = el Tour Down Under
        """,
        "gp": """
            the Spanish Grand Prix = el Gran Premio de España
            the Monaco Grand Prix = el Gran Premio de Mónaco
            the Italian Grand Prix = el Gran Premio de Italia
            the British Grand Prix = el Gran Premio de Gran Bretaña
            the Japanese Grand Prix = el Gran Premio de Japón
            the Abu Dhabi Grand Prix = el Gran Premio de Abu Dabi
            the Valencian Community Grand Prix = el Gran Premio de la Comunitat Valenciana
            the Mexican Grand Prix = el Gran Premio de México
            the Belgian Grand Prix = el Gran Premio de Bélgica
            the Australian Grand Prix = el Gran Premio de Australia
            the Catalan Grand Prix = el Gran Premio de Cataluña
            the Aragon Grand Prix = el Gran Premio de Aragón
        """,
        "games": """
            the Olympic Games = los Juegos Olímpicos
            the Paralympic Games = los Juegos Paralímpicos
            the European Championships = el Campeonato de Europa
            the World Championships = el Campeonato del Mundo
            the Mediterranean Games = los Juegos Mediterráneos
            the Commonwealth Games = los Juegos de la Commonwealth
            the Winter Olympics = los Juegos Olímpicos de Invierno
            the Pan American Games = los Juegos Panamericanos
            the World Indoor Championships = el Campeonato del Mundo en Pista Cubierta
            the European Games = los Juegos Europeos
        """,
        "fest": """
            Holy Week = la Semana Santa
            the Fallas = las Fallas
            San Fermín = los Sanfermines
            the Feria de Abril = la Feria de Abril
            the Cádiz Carnival = el Carnaval de Cádiz
            Mobile World Congress = el Mobile World Congress
            FITUR = Fitur
            the Tomatina = la Tomatina
            Primavera Sound
            Mad Cool
            Sónar = el Sónar
            La Mercè = las fiestas de la ^Mercè
            the Semana Grande = la Semana Grande
            Oktoberfest = el Oktoberfest
            El Rocío = la romería de ^El Rocío
        """,
        "filmfest": """
            the San Sebastián Film Festival = el Festival de Cine de San Sebastián
            the Málaga Film Festival = el Festival de Málaga
            the Cannes Film Festival = el Festival de Cannes
            the Venice Film Festival = el Festival de Venecia
            the Berlinale = la Berlinale
            the Sundance Festival = el Festival de Sundance
            the Seminci = la Seminci
            the Sitges Film Festival = el Festival de Sitges
            the Toronto Film Festival = el Festival de Toronto
            the Guadalajara Film Festival = el Festival de Cine de Guadalajara
        """,
        "award": """
            the Cervantes Prize = el Premio Cervantes
            the Nobel Prize in Literature = el Premio Nobel de Literatura
            the Princess of Asturias Award = el Premio Princesa de Asturias
            a Goya Award = un premio ^Goya
            an Oscar = un Óscar
            the Golden Bear = el Oso de Oro
            the Palme d'Or = la Palma de Oro
            the Golden Shell = la Concha de Oro
            the Planeta Prize = el Premio Planeta
            a Grammy = un Grammy
            a Latin Grammy = un Grammy Latino
            the National Literature Prize = el Premio Nacional de Literatura
            the Golden Lion = el León de Oro
            the Ariel Award = el Premio Ariel
        """,
        "storm": """
            Filomena
            Gloria
            Ciarán
            Bárbara
            Aline
            Domingos
            Karlotta
            Juliette
            Óscar
            Bernard
            Celia
            Efraín
            Hortense
            Jana
            Kirk
            Martinho
        """,
    },
}

NATIONALITIES = """
    Spanish = español = española = Spaniard
    French = francés = francesa = Frenchman/Frenchwoman
    German = alemán = alemana = German
    Italian = italiano = italiana = Italian
    British = británico = británica = Briton
    American = estadounidense = estadounidense = American
    Mexican = mexicano = mexicana = Mexican
    Argentine = argentino = argentina = Argentine
    Colombian = colombiano = colombiana = Colombian
    Portuguese = portugués = portuguesa = Portuguese
    Brazilian = brasileño = brasileña = Brazilian
    Chilean = chileno = chilena = Chilean
    Japanese = japonés = japonesa = Japanese
    Chinese = chino = china = Chinese
    Russian = ruso = rusa = Russian
    Moroccan = marroquí = marroquí = Moroccan
    Dutch = neerlandés = neerlandesa = Dutchman/Dutchwoman
    Belgian = belga = belga = Belgian
    Swiss = suizo = suiza = Swiss
    Swedish = sueco = sueca = Swede
    Norwegian = noruego = noruega = Norwegian
    Polish = polaco = polaca = Pole
    Irish = irlandés = irlandesa = Irishman/Irishwoman
    Greek = griego = griega = Greek
    Peruvian = peruano = peruana = Peruvian
    Venezuelan = venezolano = venezolana = Venezuelan
    Cuban = cubano = cubana = Cuban
    Uruguayan = uruguayo = uruguaya = Uruguayan
    Canadian = canadiense = canadiense = Canadian
    Australian = australiano = australiana = Australian
    Austrian = austriaco = austriaca = Austrian
    Danish = danés = danesa = Dane
    Croatian = croata = croata = Croat
    Turkish = turco = turca = Turk
    Egyptian = egipcio = egipcia = Egyptian
    Serbian = serbio = serbia = Serb
    Slovenian = esloveno = eslovena = Slovenian
    Ecuadorian = ecuatoriano = ecuatoriana = Ecuadorian
    Bolivian = boliviano = boliviana = Bolivian
    Ukrainian = ucraniano = ucraniana = Ukrainian
    Kenyan = keniano = keniana = Kenyan
    Belarusian = bielorruso = bielorrusa = Belarusian
"""

# ---------------------------------------------------------------------------------------------
# Parallel templates: (domain, English, Spanish). Tokens are separated by single spaces.
#   <kind#n>            an entity (or value) slot; the same key in both sides is the same filler
#   <kind#n:bare>       the entity without its leading article
#   <nat#n:adj>         nationality adjective (Spanish masculine); <nat#n:adjf> Spanish feminine
#   <nat#n:adj@k#m>     adjective agreeing with the person in slot k#m (Spanish)
#   <nat#n:noun@k#m>    demonym noun for the person in slot k#m ("Spaniard" / "española")
#   {m|f@k#m}           masculine/feminine alternative by the person's gender; '_' is a space
# Spanish "de el" / "a el" (article outside an entity) become "del" / "al"; the first token is
# capitalized.
# ---------------------------------------------------------------------------------------------

TEMPLATES: list[tuple[str, str, str]] = [
    # sports
    ("sports",
     "<club#1> beat <club#2> <score#1> on <day#1> .",
     "<club#1> venció a <club#2> por <score#1> el <day#1> ."),
    ("sports",
     "<fut#1> scored twice as <club#1> won <score#1> at home against <club#2> .",
     "<fut#1> marcó dos goles en la victoria en casa de <club#1> por <score#1> ante <club#2> ."),
    ("sports",
     "<nat#1:noun@ten#1> <ten#1> beat <ten#2> <tscore#1> in the <round#1> of <tennis#1> .",
     "{el|la@ten#1} <nat#1:noun@ten#1> <ten#1> derrotó a <ten#2> por <tscore#1> en <round#1> de <tennis#1> ."),
    ("sports",
     "<cyc#1> ( <team#1> ) won the <ord#1> stage of <tour#1> , <secs#1> seconds ahead of <cyc#2> .",
     "<cyc#1> ( <team#1> ) ganó la <ord#1> etapa de <tour#1> con <secs#1> segundos de ventaja sobre <cyc#2> ."),
    ("sports",
     "<pos#1> . <cyc#1> <team#1> <time#1>",
     "<pos#1> . <cyc#1> <team#1> <time#1>"),
    ("sports",
     "<oth#1> won the <medal#1> medal at <games#1> in <city#1> on <day#1> .",
     "<oth#1> ganó la medalla de <medal#1> en <games#1> de <city#1> el <day#1> ."),
    ("sports",
     "<drv#1> finished <place#1> in <gp#1> behind <drv#2> , who had started from pole position .",
     "<drv#1> terminó <place#1> en <gp#1> por detrás de <drv#2> , que había salido desde la pole ."),
    ("sports",
     "<club#1> will face <club#2> in the final of <cup#1> in <city#1> next <month#1> .",
     "<club#1> se enfrentará a <club#2> en la final de <cup#1> , que se jugará en <month#1> en <city#1> ."),
    ("sports",
     "<club#1> sacked coach <coach#1> after the <score#1> defeat in <city#1> .",
     "<club#1> destituyó a {su_entrenador|su_entrenadora@coach#1} , <coach#1> , tras la derrota por <score#1> en <city#1> ."),
    ("sports",
     "<club#1> are top of <league#1> with <pts#1> points , <gap#1> more than <club#2> .",
     "<club#1> lidera <league#1> con <pts#1> puntos , <gap#1> más que <club#2> ."),
    ("sports",
     "\" It is a great result for everyone , \" said <fut#1> after the win over <club#1> .",
     "\" Es un gran resultado para todos \" , dijo <fut#1> tras la victoria ante <club#1> ."),
    # politics
    ("politics",
     "<pol#1> met <pol#2> in <city#1> on <day#1> to discuss the crisis in <country#1> .",
     "<pol#1> se reunió con <pol#2> el <day#1> en <city#1> para hablar de la crisis en <country#1> ."),
    ("politics",
     "The meeting in <city#1> on <day#1> between <pol#1> and <pol#2> ended without an agreement .",
     "La reunión del <day#1> en <city#1> entre <pol#1> y <pol#2> terminó sin acuerdo ."),
    ("politics",
     "The <nat#1:adj> government said on <day#1> that it would not support the proposal from <intl#1> .",
     "El Gobierno <nat#1:adj> afirmó el <day#1> que no apoyará la propuesta de <intl#1> ."),
    ("politics",
     "<pol#1> , leader of <party#1> , called for early elections in <region#1> .",
     "<pol#1> , líder de <party#1> , pidió elecciones anticipadas en <region#1> ."),
    ("politics",
     "<party#1> won <seats#1> seats in the regional election in <region#1> , according to official results .",
     "<party#1> obtuvo <seats#1> escaños en las elecciones autonómicas de <region#1> , según los resultados oficiales ."),
    ("politics",
     "<pol#1> will travel to <city#1> next week to attend the summit of <intl#1> .",
     "<pol#1> viajará la próxima semana a <city#1> para asistir a la cumbre de <intl#1> ."),
    ("politics",
     "<nat#1:adj> Foreign Minister <pol#1> said in <city#1> that the talks with <country#1> would continue .",
     "{el_ministro|la_ministra@pol#1} <nat#1:adj@pol#1> de Exteriores , <pol#1> , dijo en <city#1> que las conversaciones con <country#1> continuarán ."),
    ("politics",
     "<court#1> on <day#1> rejected the appeal filed by <party#1> against the new law .",
     "<court#1> rechazó el <day#1> el recurso presentado por <party#1> contra la nueva ley ."),
    ("politics",
     "Speaking in <city#1> , <pol#1> said <country#1> would send <small#1> soldiers to the mission led by <intl#1> .",
     "<pol#1> anunció en <city#1> que <country#1> enviará <small#1> soldados a la misión de <intl#1> ."),
    ("politics",
     "The <nat#1:adj> ambassador in <city#1> was summoned by <pol#1> on <day#1> .",
     "<pol#1> convocó el <day#1> al embajador <nat#1:adj> en <city#1> ."),
    # business
    ("business",
     "<company#1> reported a net profit of <money#1> in the <quarter#1> quarter , up <pct#1> percent .",
     "<company#1> obtuvo un beneficio neto de <money#1> en el <quarter#1> trimestre , un <pct#1> % más ."),
    ("business",
     "<company#1> agreed to buy its <nat#1:adj> rival <company#2:bare> for <money#1> .",
     "<company#1> acordó comprar a su rival <nat#1:adj> <company#2:bare> por <money#1> ."),
    ("business",
     "Shares in <company#1> fell <pct#1> percent on the <city#1> stock exchange after the announcement by <bank#1> .",
     "Las acciones de <company#1> cayeron un <pct#1> % en la bolsa de <city#1> tras el anuncio de <bank#1> ."),
    ("business",
     "<biz#1> , {chairman|chairwoman@biz#1} of <company#1> , announced <jobs#1> new jobs in <region#1> .",
     "<biz#1> , {presidente|presidenta@biz#1} de <company#1> , anunció <jobs#1> nuevos empleos en <region#1> ."),
    ("business",
     "<bank#1> raised interest rates by <bp#1> basis points on <day#1> , <media#1> reported .",
     "<bank#1> subió los tipos de interés en <bp#1> puntos básicos el <day#1> , según informó <media#1> ."),
    ("business",
     "The <nat#1:adj> carmaker <auto#1> will open a new plant near <city#1> in <fyear#1> .",
     "El fabricante de automóviles <nat#1:adj> <auto#1> abrirá una nueva planta cerca de <city#1> en <fyear#1> ."),
    ("business",
     "Unemployment in <country#1> fell to <pct#1> percent in <month#1> , according to <stat#1> .",
     "El paro en <country#1> bajó al <pct#1> % en <month#1> , según <stat#1> ."),
    ("business",
     "<regulator#1> fined <company#1> <money#1> for breaching competition rules .",
     "<regulator#1> multó a <company#1> con <money#1> por vulnerar las normas de competencia ."),
    # travel
    ("travel",
     "<airline#1> will launch direct flights between <city#1> and <city#2> in <month#1> .",
     "<airline#1> lanzará en <month#1> vuelos directos entre <city#1> y <city#2> ."),
    ("travel",
     "More than <big#1> tourists visited <region#1> during <fest#1> , a record for the region .",
     "Más de <big#1> turistas visitaron <region#1> durante <fest#1> , un récord para la región ."),
    ("travel",
     "Trains between <city#1> and <city#2> were cancelled on <day#1> because of a strike at <rail#1> .",
     "Los trenes entre <city#1> y <city#2> fueron cancelados el <day#1> por una huelga en <rail#1> ."),
    ("travel",
     "<city#1> airport handled <mln#1> passengers in <pyear#1> , <media#1> reported .",
     "El aeropuerto de <city#1> registró <mln#1> pasajeros en <pyear#1> , según <media#1> ."),
    ("travel",
     "A <nat#1:adj> hiker was rescued by <police#1> in the <range#1:bare> area on <day#1> .",
     "Un excursionista <nat#1:adj> fue rescatado el <day#1> por <police#1> en la zona de <range#1> ."),
    # weather
    ("weather",
     "Heavy rain is expected in <region#1> and <region#2> on <day#1> , <weather#1> said .",
     "<weather#1> prevé fuertes lluvias el <day#1> en <region#1> y <region#2> ."),
    ("weather",
     "Temperatures will reach <temp#1> degrees in <city#1> this weekend , the highest since <pyear#1> .",
     "Las temperaturas alcanzarán los <temp#1> grados en <city#1> este fin de semana , las más altas desde <pyear#1> ."),
    ("weather",
     "Storm <storm#1> left thousands of homes without power in <region#1> on <day#1> .",
     "La borrasca <storm#1> dejó sin luz a miles de hogares en <region#1> el <day#1> ."),
    ("weather",
     "The <river#1:bare> river burst its banks near <city#1> after days of heavy rain .",
     "El río <river#1:bare> se desbordó cerca de <city#1> tras varios días de intensas lluvias ."),
    ("weather",
     "Waves of up to <waves#1> metres are expected in <sea#1> , <weather#1> warned on <day#1> .",
     "<weather#1> alertó el <day#1> de olas de hasta <waves#1> metros en <sea#1> ."),
    # culture
    ("culture",
     "<cult#1> received <award#1> at a ceremony in <city#1> on <day#1> .",
     "<cult#1> recibió <award#1> el <day#1> en una ceremonia celebrada en <city#1> ."),
    ("culture",
     "The new film by <cult#1> will premiere at <filmfest#1> in <month#1> .",
     "La nueva película de <cult#1> se estrenará en <month#1> en <filmfest#1> ."),
    ("culture",
     "<museum#1> will open an exhibition on <cult#1> in <month#1> , <media#1> reported .",
     "<museum#1> abrirá en <month#1> una exposición sobre <cult#1> , según <media#1> ."),
]

# ---------------------------------------------------------------------------------------------
# Value slots (never entities): each returns an (English, Spanish) pair. "money" includes the
# currency ("2.5 billion euros" / "2.500 millones de euros") and "mln" the Spanish "de".
# ---------------------------------------------------------------------------------------------

DAYS = list(zip("Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split(),
                "lunes martes miércoles jueves viernes sábado domingo".split()))
MONTHS = list(zip("January February March April May June July August September October November December".split(),
                  "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre".split()))
ROUNDS = [("quarter-finals", "los cuartos de final"), ("semi-finals", "las semifinales"), ("final", "la final"),
          ("second round", "la segunda ronda"), ("third round", "la tercera ronda"), ("first round", "la primera ronda")]
ORDINALS = [("first", "primera"), ("second", "segunda"), ("third", "tercera"), ("fourth", "cuarta"), ("fifth", "quinta"),
            ("sixth", "sexta"), ("seventh", "séptima"), ("eighth", "octava"), ("ninth", "novena"), ("tenth", "décima")]
PLACES = [("second", "segundo"), ("third", "tercero"), ("fourth", "cuarto"), ("fifth", "quinto"), ("sixth", "sexto")]
QUARTERS = [("first", "primer"), ("second", "segundo"), ("third", "tercer"), ("fourth", "cuarto")]
MEDALS = [("gold", "oro"), ("silver", "plata"), ("bronze", "bronce")]
SCORES = ["1-0", "2-0", "2-1", "3-0", "3-1", "3-2", "4-0", "4-1", "4-2", "5-1", "5-2"]
SETS = ["6-4", "6-3", "6-2", "7-5", "7-6", "6-1"]


def _same(value: str) -> tuple[str, str]:
    return value, value


def _thousands(n: int, sep: str) -> str:
    return f"{n:,}".replace(",", sep)


def _decimal(rng: random.Random, lo: int, hi: int) -> tuple[str, str]:
    tenths = rng.randint(lo * 10, hi * 10)
    en = f"{tenths // 10}.{tenths % 10}"
    return en, en.replace(".", ",")


def _money(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.5:
        millions = rng.choice([15, 40, 75, 120, 250, 300, 450, 600, 800, 950])
        return f"{millions} million euros", f"{millions} millones de euros"
    tenths = rng.randint(11, 95)
    en = f"{tenths // 10}.{tenths % 10} billion" if tenths % 10 else f"{tenths // 10} billion"
    return f"{en} euros", f"{_thousands(tenths * 100, '.')} millones de euros"


def _tennis_score(rng: random.Random) -> tuple[str, str]:
    sets = " , ".join(rng.choice(SETS) for _ in range(rng.choice([2, 2, 3])))
    return sets, sets


def _race_time(rng: random.Random) -> tuple[str, str]:
    return _same(f"{rng.randint(3, 5)}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}")


VALUES = {
    "day": lambda rng: rng.choice(DAYS),
    "month": lambda rng: rng.choice(MONTHS),
    "round": lambda rng: rng.choice(ROUNDS),
    "ord": lambda rng: rng.choice(ORDINALS),
    "place": lambda rng: rng.choice(PLACES),
    "quarter": lambda rng: rng.choice(QUARTERS),
    "medal": lambda rng: rng.choice(MEDALS),
    "score": lambda rng: _same(rng.choice(SCORES)),
    "tscore": _tennis_score,
    "time": _race_time,
    "pos": lambda rng: _same(str(rng.randint(1, 10))),
    "secs": lambda rng: _same(str(rng.randint(3, 59))),
    "pts": lambda rng: _same(str(rng.randint(20, 80))),
    "gap": lambda rng: _same(str(rng.randint(2, 9))),
    "seats": lambda rng: _same(str(rng.randint(4, 70))),
    "small": lambda rng: _same(str(rng.choice([50, 80, 100, 120, 150, 200, 300, 500, 800]))),
    "jobs": lambda rng: _same(str(rng.choice([120, 200, 250, 300, 450, 500, 600, 900]))),
    "big": lambda rng: (lambda n: (_thousands(n, ","), _thousands(n, ".")))(rng.randint(12, 95) * 10_000),
    "mln": lambda rng: (lambda n: (f"{n} million", f"{n} millones de"))(rng.randint(3, 60)),
    "money": _money,
    "pct": lambda rng: _decimal(rng, 1, 15),
    "bp": lambda rng: _same(rng.choice(["25", "50", "75"])),
    "temp": lambda rng: _same(str(rng.randint(36, 46))),
    "waves": lambda rng: _same(str(rng.randint(4, 9))),
    "fyear": lambda rng: _same(str(rng.randint(2026, 2031))),
    "pyear": lambda rng: _same(str(rng.randint(1995, 2019))),
}

# ---------------------------------------------------------------------------------------------
# Machinery
# ---------------------------------------------------------------------------------------------

ARTICLES = frozenset({"the", "a", "an", "el", "la", "los", "las", "un", "una"})
_SLOT = re.compile(r"^<([a-z]+)#(\d+)(?::(.+))?>$")
_ALT = re.compile(r"^\{(.+)\|(.+)@([a-z]+#\d+)\}$")


@dataclass(frozen=True)
class Entry:
    kind: str
    etype: str
    en: str
    es: str
    female: bool = False
    es_f: str = ""  # nationalities: Spanish feminine form
    en_noun: str = ""  # nationalities: English demonym noun (masc/fem as "m/f")


@dataclass
class Pool:
    train: list[Entry]
    held_out: list[Entry]

    @property
    def all(self) -> list[Entry]:
        return self.train + self.held_out


def _lines(block: str) -> list[str]:
    return [line.strip() for line in block.strip().splitlines() if line.strip()]


def _split(entries: list[Entry]) -> Pool:
    return Pool([e for i, e in enumerate(entries) if i % 3 != 2], [e for i, e in enumerate(entries) if i % 3 == 2])


def _settle(pools: dict[str, Pool]) -> dict[str, Pool]:
    """A name listed in two pools is held out in both or in neither (training wins)."""
    trained = {e.en for pool in pools.values() for e in pool.train}
    settled = {}
    for kind, pool in pools.items():
        moved = [e for e in pool.held_out if e.en in trained]
        settled[kind] = Pool(pool.train + moved, [e for e in pool.held_out if e.en not in trained])
    return settled


def build_pools() -> dict[str, Pool]:
    """Every gazetteer pool, split into training and held-out entries."""
    pools: dict[str, Pool] = {}
    for kind, block in PERSONS.items():
        entries = []
        for line in _lines(block):
            female = line.endswith("(f)")
            name = line.removesuffix("(f)").strip()
            entries.append(Entry(kind, "PER", name, name, female))
        pools[kind] = _split(entries)
    for etype, kinds in NAMES.items():
        for kind, block in kinds.items():
            entries = []
            for line in _lines(block):
                en, _, es = (part.strip() for part in line.partition(" = "))
                entries.append(Entry(kind, etype, en, es or en))
            pools[kind] = _split(entries)
    nats = []
    for line in _lines(NATIONALITIES):
        en, es_m, es_f, noun = (part.strip() for part in line.split(" = "))
        nats.append(Entry("nat", "MISC", en, es_m, es_f=es_f, en_noun=noun))
    pools["nat"] = _split(nats)
    return _settle(pools)


def _entity(surface: str, etype: str, bare: bool) -> list[tuple[str, str]]:
    """Tokens and IOB2 tags of one entity mention; leading articles (or words before '^') are O."""
    if "^" in surface:
        outside_text, _, inside_text = surface.partition("^")
        outside, inside = outside_text.split(), inside_text.split()
    else:
        toks = surface.split()
        n = 0
        while n < len(toks) - 1 and toks[n] in ARTICLES:
            n += 1
        outside, inside = toks[:n], toks[n:]
    if bare:
        while outside and outside[0] in ARTICLES:
            outside = outside[1:]
    pairs = [(t, "O") for t in outside]
    pairs += [(t, ("B-" if i == 0 else "I-") + etype) for i, t in enumerate(inside)]
    return pairs


def _slot_keys(side: str) -> list[str]:
    keys = []
    for tok in side.split():
        m = _SLOT.match(tok)
        if m and f"{m[1]}#{m[2]}" not in keys:
            keys.append(f"{m[1]}#{m[2]}")
    return keys


def _render(side: str, lang: str, fill: dict[str, object]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for tok in side.split():
        slot, alt = _SLOT.match(tok), _ALT.match(tok)
        if alt:
            person = fill[alt[3]]
            assert isinstance(person, Entry)
            out += [(t, "O") for t in (alt[2] if person.female else alt[1]).split("_")]
        elif slot:
            key, mod = f"{slot[1]}#{slot[2]}", slot[3] or ""
            value = fill[key]
            if isinstance(value, tuple):  # a value slot
                out += [(t, "O") for t in value[0 if lang == "en" else 1].split()]
            elif value.kind == "nat":
                out += _entity(_nationality(value, mod, lang, fill), "MISC", bare=False)
            else:
                out += _entity(value.en if lang == "en" else value.es, value.etype, bare=mod == "bare")
        else:
            out.append((tok, "O"))
    if lang == "es":
        out = _contract(out)
    first, tag = out[0]
    if tag == "O" and first[:1].islower():
        out[0] = (first[:1].upper() + first[1:], tag)
    return out


def _nationality(nat: Entry, mod: str, lang: str, fill: dict[str, object]) -> str:
    form, _, agree = mod.partition("@")
    female = False
    if agree:
        person = fill[agree]
        assert isinstance(person, Entry)
        female = person.female
    elif form == "adjf":
        female = True
    if lang == "es":
        return nat.es_f if female else nat.es
    if form == "noun":
        masc, _, fem = nat.en_noun.partition("/")
        return fem if female and fem else masc
    return nat.en


def _contract(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Spanish 'de el' -> 'del', 'a el' -> 'al' when the article is not part of an entity."""
    out: list[tuple[str, str]] = []
    for tok, tag in pairs:
        if tok == "el" and tag == "O" and out and out[-1] == ("de", "O"):
            out[-1] = ("del", "O")
        elif tok == "el" and tag == "O" and out and out[-1] == ("a", "O"):
            out[-1] = ("al", "O")
        else:
            out.append((tok, tag))
    return out


def _pick(pool: Pool, mode: str, rng: random.Random, taken: list[str]) -> Entry:
    if mode == "train":
        candidates = pool.train
    elif mode == "test":
        candidates = pool.held_out if rng.random() < HELD_OUT_SHARE else pool.train
    else:
        candidates = pool.all
    choices = [e for e in candidates if e.en not in taken and e.es not in taken]
    return rng.choice(choices)


def make_pair(template: tuple[str, str, str], mode: str, rng: random.Random, pools: dict[str, Pool]):
    """One parallel sentence from a template: (English pairs, Spanish pairs)."""
    _, en_side, es_side = template
    fill: dict[str, object] = {}
    taken: list[str] = []
    for key in _slot_keys(en_side) + [k for k in _slot_keys(es_side) if k not in _slot_keys(en_side)]:
        kind = key.split("#")[0]
        if kind in VALUES:
            fill[key] = VALUES[kind](rng)
        else:
            entry = _pick(pools[kind], mode, rng, taken)
            taken += [entry.en, entry.es]
            fill[key] = entry
    return _render(en_side, "en", fill), _render(es_side, "es", fill)


def check_templates(pools: dict[str, Pool]) -> None:
    """Both sides of a template name the same entity slots; every slot kind exists."""
    for domain, en_side, es_side in TEMPLATES:
        ents = [sorted(k for k in _slot_keys(side) if k.split("#")[0] not in VALUES) for side in (en_side, es_side)]
        if ents[0] != ents[1]:
            raise ValueError(f"entity slots differ between sides: {en_side!r} / {es_side!r}")
        for key in _slot_keys(en_side) + _slot_keys(es_side):
            if key.split("#")[0] not in VALUES and key.split("#")[0] not in pools:
                raise ValueError(f"unknown slot {key} in {domain} template {en_side!r}")


class _Generator:
    """Draws unique sentences; every template is used once per round, in a shuffled order."""

    def __init__(self, pools: dict[str, Pool], seen: set[str]):
        self.pools, self.seen = pools, seen

    def draw(self, n: int, mode: str, seed: int, keep: str) -> list[tuple[list, list]]:
        rng = random.Random(seed)
        out: list[tuple[list, list]] = []
        order: list[int] = []
        while len(out) < n:
            if not order:
                order = list(range(len(TEMPLATES)))
                rng.shuffle(order)
            template = TEMPLATES[order.pop()]
            for _ in range(50):
                en, es = make_pair(template, mode, rng, self.pools)
                texts = [" ".join(t for t, _ in side) for side in (en, es)]
                keys = [f"{lang}:{text}" for lang, text in zip(("en", "es"), texts) if lang in keep]
                lengths_ok = all(MIN_TOKENS <= len(side) <= MAX_TOKENS for side in (en, es))
                if lengths_ok and not any(k in self.seen for k in keys):
                    self.seen.update(keys)
                    out.append((en, es))
                    break
            else:
                raise RuntimeError(f"could not draw a new sentence from template {template[1]!r}")
        return out


def to_conll(sentences: list[list[tuple[str, str]]]) -> str:
    return "\n".join("".join(f"{tok}\t{tag}\n" for tok, tag in sent) for sent in sentences)


def to_lines(sentences: list[list[tuple[str, str]]]) -> str:
    return "".join(" ".join(tok for tok, _ in sent) + "\n" for sent in sentences)


def build() -> dict[str, str]:
    """File name -> file content, for every sample file."""
    pools = build_pools()
    check_templates(pools)
    gen = _Generator(pools, set())
    train = gen.draw(SIZES["en_train"], "train", SEED + 1, keep="en es")
    en_dev = gen.draw(SIZES["en_dev"], "train", SEED + 2, keep="en")
    es_dev = gen.draw(SIZES["es_dev"], "test", SEED + 3, keep="es")
    es_test = gen.draw(SIZES["es_test"], "test", SEED + 4, keep="es")
    unlabeled = gen.draw(SIZES["es_unlabeled"], "all", SEED + 5, keep="es")
    return {
        "en_train.conll": to_conll([en for en, _ in train]),
        "en_dev.conll": to_conll([en for en, _ in en_dev]),
        "es_train.conll": to_conll([es for _, es in train]),
        "es_unlabeled.txt": to_lines([es for _, es in unlabeled]),
        "es_dev.conll": to_conll([es for _, es in es_dev]),
        "es_test.conll": to_conll([es for _, es in es_test]),
    }


def stats(content: str) -> dict[str, int]:
    """Sentences, tokens and entities per type of one CoNLL file's content."""
    counts: Counter[str] = Counter()
    for block in content.split("\n\n"):
        rows = [line.split("\t") for line in block.splitlines() if line]
        if not rows:
            continue
        counts["sentences"] += 1
        counts["tokens"] += len(rows)
        for _, tag in rows:
            if tag.startswith("B-"):
                counts[tag[2:]] += 1
    return dict(counts)


def main(out_dir: Path = OUT_DIR) -> dict[str, Path]:
    """Write every sample file into out_dir (created if needed, files overwritten)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, content in build().items():
        path = out_dir / name
        path.write_bytes(content.encode("utf-8"))
        written[name] = path
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR
    for name, path in main(target).items():
        text = path.read_text(encoding="utf-8")
        if name.endswith(".conll"):
            s = stats(text)
            ents = ", ".join(f"{t} {s.get(t, 0)}" for t in ("PER", "LOC", "ORG", "MISC"))
            print(f"{path}: {s['sentences']} sentences, {s['tokens']} tokens; {ents}")
        else:
            lines = text.splitlines()
            print(f"{path}: {len(lines)} sentences, {sum(len(l.split()) for l in lines)} tokens")
